-- Claims the sweep of a node: moves it from the live set to the dead set if
-- its heartbeat is still stale, or renews an abandoned claim.
--
-- KEYS[1]: <p>:{nodes}:live    KEYS[2]: <p>:{nodes}:dead
-- ARGV[1]: node id    ARGV[2]: dead-node timeout (ms)    ARGV[3]: sweep lock TTL (ms)
--
-- Returns 1 if the caller now owns the sweep, else 0 (the node came back, or
-- someone else swept it already).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = ARGV[1]
local beat = redis.call('ZSCORE', KEYS[1], n)
if beat then
  if tonumber(beat) >= now - tonumber(ARGV[2]) then
    return 0
  end
  redis.call('ZREM', KEYS[1], n)
  redis.call('ZADD', KEYS[2], now, n)
  return 1
end
local claimed = redis.call('ZSCORE', KEYS[2], n)
if claimed and tonumber(claimed) < now - tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[2], now, n)
  return 1
end
return 0
