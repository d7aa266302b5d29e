-- Whether a user is in a group: persistently (not expired), or through one of
-- its connections that still count (prelude: live_record, which removes the
-- others).
--
-- KEYS[1]: user groups key <p>:hub:{<hub>}:user:<u>:groups
-- ARGV[1]: hub key base    ARGV[2]: user id    ARGV[3]: group
--
-- Returns 1 or 0.

local user, g = ARGV[2], ARGV[3]
local expiry = redis.call('ZSCORE', KEYS[1], g)
if expiry and (expiry == 'inf' or tonumber(expiry) > now_ms()) then
  return 1
end
local members = group_conns_key(g)
for _, c in ipairs(live_user_conns(user)) do
  if redis.call('SISMEMBER', members, c) == 1 then
    return 1
  end
end
return 0
