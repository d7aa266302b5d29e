-- Writes a connection's presence entry in a room, and says what the room
-- held of its user, in one step (rooms.rs).
--
-- KEYS[1]: room key <p>:hub:{<hub>}:room:<r>
-- KEYS[2]: this node's rooms <p>:hub:{<hub>}:node:<n>:rooms
-- ARGV[1]: hub key base    ARGV[2]: room    ARGV[3]: connection id
-- ARGV[4]: node    ARGV[5]: user    ARGV[6]: entry    ARGV[7]: TTL (ms, > 0)
--
-- Returns {previous entry of the connection (nil: none), then every other
-- entry of the user in the room}. The room expires TTL after this write; the
-- node's set of rooms lives at least as long.

local key, c, u, ttl = KEYS[1], ARGV[3], ARGV[5], tonumber(ARGV[7])
local previous = false
local old = redis.call('HGET', key, c)
if old then
  local _, _, entry = room_value(old)
  previous = entry or false
end
redis.call('HSET', key, c, pair(ARGV[4], pair(u, ARGV[6])))
redis.call('PEXPIRE', key, ttl)
redis.call('SADD', KEYS[2], pair(ARGV[2], c))
if redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
local out = {previous}
for _, entry in ipairs(user_room_entries(key, u, c)) do
  out[#out + 1] = entry
end
return out
