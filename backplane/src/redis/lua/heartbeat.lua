-- A node's heartbeat: its score in the live set is Redis' time now.
--
-- KEYS[1]: <p>:{nodes}:live    KEYS[2]: <p>:{nodes}:dead
-- ARGV[1]: node id
--
-- Returns 1 if the node was not in the live set (it was swept, or Redis lost
-- its data): the node must then register its connections again. Else 0.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local swept = redis.call('ZREM', KEYS[2], ARGV[1])
local added = redis.call('ZADD', KEYS[1], now, ARGV[1])
if swept + added > 0 then
  return 1
end
return 0
