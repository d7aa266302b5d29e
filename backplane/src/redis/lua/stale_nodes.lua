-- Nodes that need a sweep. Read-only.
--
-- KEYS[1]: <p>:{nodes}:live    KEYS[2]: <p>:{nodes}:dead
-- ARGV[1]: dead-node timeout (ms)    ARGV[2]: sweep lock TTL (ms)
--
-- Returns the nodes whose last heartbeat is older than the timeout, then the
-- claimed nodes whose sweep was abandoned (claimed longer than a lock TTL ago).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[2])))) do
  out[#out + 1] = n
end
return out
