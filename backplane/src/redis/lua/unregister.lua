-- Forgets a connection and its group memberships.
--
-- KEYS[1]: conn key <p>:hub:{<hub>}:conn:<c>
-- ARGV[1]: hub key base    ARGV[2]: connection id
--
-- Returns {0, ''} if the connection was not recorded, else {1, u}: u is its
-- user when the user has no connection left here that counts (decided in
-- this one atomic step, so only one unregistration reports it), else ''.
-- The user's last-seen time is written by drop_conn (prelude).

local rec = drop_conn(ARGV[2])
if not rec then
  return {0, ''}
end
if rec[2] and #live_user_conns(rec[2]) == 0 then
  return {1, rec[2]}
end
return {1, ''}
