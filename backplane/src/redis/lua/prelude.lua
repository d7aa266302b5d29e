-- Prelude of every per-hub script (prepended at compile time by scripts.rs).
--
-- ARGV[1]: the hub's key base "<p>:hub:{<hub>}:" (names.rs, RedisNames::hub_base).
-- The key builders below mirror names.rs exactly; every user-controlled part
-- goes through esc(). All keys share the base's hash tag: one cluster slot.

local base = ARGV[1]

-- Percent-escapes '%', ':', '{' and '}' as names.rs `escape` does.
local function esc(part)
  return (string.gsub(part, '[%%:{}]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end

local hub_conns_key = base .. 'conns'
local function conn_key(c) return base .. 'conn:' .. esc(c) end
local function conn_groups_key(c) return base .. 'conn:' .. esc(c) .. ':groups' end
local function node_conns_key(n) return base .. 'node:' .. esc(n) .. ':conns' end
local function lease_key(n) return base .. 'node:' .. esc(n) .. ':lease' end
local function user_conns_key(u) return base .. 'user:' .. esc(u) .. ':conns' end
local function user_groups_key(u) return base .. 'user:' .. esc(u) .. ':groups' end
local function group_conns_key(g) return base .. 'group:' .. esc(g) .. ':conns' end
local function last_seen_key(u) return base .. 'user:' .. esc(u) .. ':seen' end
local function room_key(r) return base .. 'room:' .. esc(r) end
local function node_rooms_key(n) return base .. 'node:' .. esc(n) .. ':rooms' end

-- Two texts in one (names.rs `pair`): the first's length in bytes, ':', the
-- first, the second.
local function pair(a, b)
  return string.len(a) .. ':' .. a .. b
end

-- The two texts of a pair, or nil.
local function unpair(v)
  local colon = string.find(v, ':', 1, true)
  local len = colon and tonumber(string.sub(v, 1, colon - 1))
  if not len or len < 0 or colon + len > string.len(v) then
    return nil
  end
  return string.sub(v, colon + 1, colon + len), string.sub(v, colon + 1 + len)
end

-- A room presence field's value (rooms.rs): node, user, entry, or nil.
local function room_value(v)
  local node, rest = unpair(v)
  if not node then
    return nil
  end
  local user, entry = unpair(rest)
  if not user then
    return nil
  end
  return node, user, entry
end

-- The entries user u has in room hash `key`, but connection c's.
local function user_room_entries(key, u, c)
  local out = {}
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if all[i] ~= c then
      local _, user, entry = room_value(all[i + 1])
      if user == u then
        out[#out + 1] = entry
      end
    end
  end
  return out
end

-- How long a last-seen time is kept (lib.rs LAST_SEEN_TTL: 30 days).
local LAST_SEEN_TTL_MS = 2592000000

-- Redis server time in milliseconds: one clock for every node.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Drops a user's expired persistent memberships, keeps the key's TTL at the
-- latest expiry (none while one membership is forever), returns the live ones.
local function live_user_groups(u, now)
  local key = user_groups_key(u)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #top == 0 then
    return {}
  end
  if top[2] == 'inf' then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIREAT', key, top[2])
  end
  return redis.call('ZRANGE', key, 0, -1)
end

-- Records both directions of a membership.
local function join(c, g)
  redis.call('SADD', group_conns_key(g), c)
  redis.call('SADD', conn_groups_key(c), g)
end

-- Forgets both directions of a membership; 1 if the connection was a member.
local function leave(c, g)
  redis.call('SREM', conn_groups_key(c), g)
  return redis.call('SREM', group_conns_key(g), c)
end

-- Removes a connection and every membership of it; when it was the last
-- connection its user had here, writes the user's last-seen time. Returns its record as
-- {node, user, transport, since} (user false when anonymous), or nil.
local function drop_conn(c)
  local key = conn_key(c)
  local rec = redis.call('HMGET', key, 'node', 'user', 'transport', 'since')
  if not rec[1] then
    redis.call('DEL', conn_groups_key(c))
    return nil
  end
  redis.call('SREM', node_conns_key(rec[1]), c)
  if redis.call('EXISTS', node_conns_key(rec[1])) == 0 then
    redis.call('DEL', lease_key(rec[1]))
  end
  if rec[2] then
    redis.call('SREM', user_conns_key(rec[2]), c)
    if redis.call('EXISTS', user_conns_key(rec[2])) == 0 then
      redis.call('SET', last_seen_key(rec[2]), now_ms(), 'PX', LAST_SEEN_TTL_MS)
    end
  end
  redis.call('SREM', hub_conns_key, c)
  for _, g in ipairs(redis.call('SMEMBERS', conn_groups_key(c))) do
    redis.call('SREM', group_conns_key(g), c)
  end
  redis.call('DEL', conn_groups_key(c), key)
  return rec
end


-- Whether node n's records in this hub still count: its lease (renewed by
-- its heartbeat) exists. Asked once per node and script.
local leases = {}
local function node_alive(n)
  local alive = leases[n]
  if alive == nil then
    alive = redis.call('EXISTS', lease_key(n)) == 1
    leases[n] = alive
  end
  return alive
end

-- Removes every connection of node n in this hub, and its room presence
-- entries: its lease expired, so it died and nobody swept it.
local function expire_node(n)
  for _, c in ipairs(redis.call('SMEMBERS', node_conns_key(n))) do
    drop_conn(c)
  end
  for _, m in ipairs(redis.call('SMEMBERS', node_rooms_key(n))) do
    local r, c = unpair(m)
    if r then
      redis.call('HDEL', room_key(r), c)
    end
  end
  redis.call('DEL', node_conns_key(n), lease_key(n), node_rooms_key(n))
  leases[n] = false
end

-- The fields ('node', ...) of a connection that still counts, or nil. A
-- connection whose node's lease expired is removed with its node's others.
local function live_record(c, ...)
  local rec = redis.call('HMGET', conn_key(c), 'node', ...)
  if not rec[1] then
    return nil
  end
  if node_alive(rec[1]) then
    return rec
  end
  expire_node(rec[1])
  return nil
end

-- The connections of user u that still count (see live_record).
local function live_user_conns(u)
  local out = {}
  for _, c in ipairs(redis.call('SMEMBERS', user_conns_key(u))) do
    if live_record(c) then
      out[#out + 1] = c
    end
  end
  return out
end
