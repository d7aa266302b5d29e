-- Takes a token from a user's rate bucket: a token bucket of `limit`
-- tokens refilled evenly over `per` ms, on Redis' clock (one for every node).
--
-- KEYS[1]: bucket key <p>:hub:{<hub>}:user:<u>:rate:<b> (hash `tokens`, `at` ms)
-- ARGV[1]: hub key base    ARGV[2]: limit (> 0)    ARGV[3]: per (ms, > 0)
--
-- Returns {1, 0} when a token was taken, else {0, wait}: the ms until one is
-- there. The key expires when the bucket would be full again (a missing
-- bucket is a full one), so an idle user leaves no key behind.

local limit, per = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if not tokens or not at then
  tokens, at = limit, now
end
if now > at then
  tokens = math.min(limit, tokens + (now - at) * limit / per)
end
local taken, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = math.ceil((1 - tokens) * per / limit)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((limit - tokens) * per / limit)))
return {taken, wait}
