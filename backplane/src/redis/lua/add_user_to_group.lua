-- Adds a user's current connections to a group and, unless the mode is
-- 'current', remembers the membership for its future connections.
-- Current connections are those that still count (prelude: live_user_conns).
--
-- KEYS[1]: user groups key <p>:hub:{<hub>}:user:<u>:groups
-- ARGV[1]: hub key base    ARGV[2]: user id    ARGV[3]: group
-- ARGV[4]: 'forever' | 'current' | 'ttl'
-- ARGV[5]: (ttl) milliseconds from now until the membership expires
--
-- Returns the number of connections that joined.

local user, g, mode = ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
if mode == 'forever' then
  redis.call('ZADD', KEYS[1], 'inf', g)
elseif mode == 'ttl' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), g)
end
live_user_groups(user, now)

local conns = live_user_conns(user)
for _, c in ipairs(conns) do
  join(c, g)
end
return #conns
