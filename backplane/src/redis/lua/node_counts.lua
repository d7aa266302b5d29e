-- How many connections each of some nodes holds in a hub. A node whose lease
-- expired holds none: its connections are removed on the way (prelude:
-- expire_node), as a sweep would.
--
-- KEYS[1]: <p>:hub:{<hub>}:conns (routes the script to the hub's slot)
-- ARGV[1]: hub key base    ARGV[2..]: node ids
--
-- Returns one count per node, in ARGV's order.

local out = {}
for i = 2, #ARGV do
  local n = ARGV[i]
  if node_alive(n) then
    out[#out + 1] = redis.call('SCARD', node_conns_key(n))
  else
    if redis.call('EXISTS', node_conns_key(n)) == 1 then
      expire_node(n)
    end
    out[#out + 1] = 0
  end
end
return out
