-- Records a connection (or restores one after a Redis outage).
--
-- KEYS[1]: conn key <p>:hub:{<hub>}:conn:<c> (routes the script to the hub's slot)
-- ARGV[1]: hub key base          ARGV[2]: connection id
-- ARGV[3]: node id               ARGV[4]: hub name
-- ARGV[5]: '1' with a user, '0' anonymous     ARGV[6]: user id (ignored when anonymous)
-- ARGV[7]: transport             ARGV[8]: since (unix ms)
-- ARGV[9]: per-user limit, '' = none (checked only in mode 'new')
-- ARGV[10]: 'new' | 'restore'
-- ARGV[11]: the node's record lease (ms), set on its lease key in the hub
-- ARGV[12..]: (restore) the groups the connection is in; memberships in other
--             groups (except the user's persistent ones) are dropped
--
-- The limit counts only connections whose node's lease lives; the others are
-- removed on the way (prelude: live_record), even when the limit refuses.
--
-- Returns {0} when the user already holds `limit` connections (nothing else
-- is written), else {1, lost, n, g...}: lost is 1 if the node's lease in the hub
-- had expired (its other records here may be gone: the node must write
-- itself back), n the user's connections that count, this one included (0
-- when anonymous; 1: the user's first), g... the user's live persistent
-- groups, which the connection has joined.

local c, node, has_user, user = ARGV[2], ARGV[3], ARGV[5] == '1', ARGV[6]
local limit, mode = tonumber(ARGV[9]), ARGV[10]

-- The caller is alive whatever its lease says: never count it out here.
local lost = 0
if redis.call('EXISTS', lease_key(node)) == 0 then
  lost = 1
end
leases[node] = true

if mode == 'new' and has_user and limit then
  local key = user_conns_key(user)
  if redis.call('SISMEMBER', key, c) == 0 and redis.call('SCARD', key) >= limit
      and #live_user_conns(user) >= limit then
    return {0}
  end
end

redis.call('HSET', KEYS[1], 'node', node, 'hub', ARGV[4], 'transport', ARGV[7], 'since', ARGV[8])
if has_user then
  redis.call('HSET', KEYS[1], 'user', user)
  redis.call('SADD', user_conns_key(user), c)
else
  redis.call('HDEL', KEYS[1], 'user')
end
redis.call('SADD', node_conns_key(node), c)
redis.call('SADD', hub_conns_key, c)
redis.call('SET', lease_key(node), node, 'PX', ARGV[11])

local groups = {}
if has_user then
  groups = live_user_groups(user, now_ms())
end
local wanted = {}
for _, g in ipairs(groups) do
  join(c, g)
  wanted[g] = true
end
if mode == 'restore' then
  for i = 12, #ARGV do
    join(c, ARGV[i])
    wanted[ARGV[i]] = true
  end
  for _, g in ipairs(redis.call('SMEMBERS', conn_groups_key(c))) do
    if not wanted[g] then
      leave(c, g)
    end
  end
end

local count = 0
if has_user then
  count = #live_user_conns(user)
end
local out = {1, lost, count}
for _, g in ipairs(groups) do
  out[#out + 1] = g
end
return out
