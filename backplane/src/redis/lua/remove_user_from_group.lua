-- Removes a user's persistent membership in a group and takes its current
-- connections out of the group.
-- Current connections are those that still count (prelude: live_user_conns).
--
-- KEYS[1]: user groups key <p>:hub:{<hub>}:user:<u>:groups
-- ARGV[1]: hub key base    ARGV[2]: user id    ARGV[3]: group
--
-- Returns 1 if the user was a member (persistently or by a connection), else 0.

local user, g = ARGV[2], ARGV[3]
local now = now_ms()
live_user_groups(user, now)
local any = redis.call('ZREM', KEYS[1], g)
live_user_groups(user, now)
for _, c in ipairs(live_user_conns(user)) do
  any = any + leave(c, g)
end
if any > 0 then
  return 1
end
return 0
