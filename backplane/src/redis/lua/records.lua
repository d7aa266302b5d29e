-- The records of the connections in a set (a group's or a user's) that still
-- count; connections of a node whose lease expired are removed on the way.
--
-- KEYS[1]: the set <p>:hub:{<hub>}:group:<g>:conns or ...:user:<u>:conns
-- ARGV[1]: hub key base
--
-- Returns a flat list, six entries per live connection:
-- id, node, hub, user (nil when anonymous), transport, since.

local out = {}
for _, c in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local rec = live_record(c, 'hub', 'user', 'transport', 'since')
  if rec then
    local n = #out
    out[n + 1], out[n + 2], out[n + 3] = c, rec[1], rec[2]
    out[n + 4], out[n + 5], out[n + 6] = rec[3], rec[4], rec[5]
  end
end
return out
