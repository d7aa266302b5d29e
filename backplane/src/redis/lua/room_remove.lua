-- Removes a connection's presence entry from a room, and says what is left
-- of its user there, in one step (rooms.rs).
--
-- KEYS[1]: room key <p>:hub:{<hub>}:room:<r>
-- ARGV[1]: hub key base    ARGV[2]: room    ARGV[3]: connection id
--
-- Returns {the removed entry (nil: there was none), then every entry its
-- user still has in the room}. The entry also leaves the set of rooms of
-- the node that wrote it.

local key, c = KEYS[1], ARGV[3]
local old = redis.call('HGET', key, c)
if not old then
  return {false}
end
redis.call('HDEL', key, c)
local node, user, entry = room_value(old)
if not node then
  return {false}
end
redis.call('SREM', node_rooms_key(node), pair(ARGV[2], c))
local out = {entry}
for _, other in ipairs(user_room_entries(key, user, c)) do
  out[#out + 1] = other
end
return out
