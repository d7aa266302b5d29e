-- Removes every connection a dead node held in one hub.
--
-- KEYS[1]: <p>:hub:{<hub>}:node:<n>:conns
-- ARGV[1]: hub key base
--
-- Returns a flat list, four entries per removed connection:
-- id, user (nil when anonymous), transport, since.

local out = {}
for _, c in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local rec = drop_conn(c)
  if rec then
    local n = #out
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = c, rec[2], rec[3], rec[4]
  end
end
redis.call('DEL', KEYS[1])
return out
