-- Removes every persistent membership of a user in a hub and takes its
-- current connections out of every group.
-- Current connections are those that still count (prelude: live_user_conns).
--
-- KEYS[1]: user groups key <p>:hub:{<hub>}:user:<u>:groups
-- ARGV[1]: hub key base    ARGV[2]: user id
--
-- Returns the groups the user left (each once).

local user = ARGV[2]
local out, seen = {}, {}
local function note(g)
  if not seen[g] then
    seen[g] = true
    out[#out + 1] = g
  end
end

for _, g in ipairs(live_user_groups(user, now_ms())) do
  note(g)
end
redis.call('DEL', KEYS[1])
for _, c in ipairs(live_user_conns(user)) do
  for _, g in ipairs(redis.call('SMEMBERS', conn_groups_key(c))) do
    redis.call('SREM', group_conns_key(g), c)
    note(g)
  end
  redis.call('DEL', conn_groups_key(c))
end
return out
