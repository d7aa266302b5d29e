-- Forgets a connection and its group memberships.
--
-- KEYS[1]: conn key <p>:hub:{<hub>}:conn:<c>
-- ARGV[1]: hub key base    ARGV[2]: connection id
--
-- Returns 1 if the connection was recorded, else 0.

if drop_conn(ARGV[2]) then
  return 1
end
return 0
