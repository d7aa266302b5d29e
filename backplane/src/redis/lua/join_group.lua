-- Adds a live connection to a group.
--
-- KEYS[1]: conn key <p>:hub:{<hub>}:conn:<c>
-- ARGV[1]: hub key base    ARGV[2]: connection id    ARGV[3]: group
--
-- Returns 1, or 0 when no such connection counts (nothing is written, except
-- removing the connections of a node whose lease expired).

if not live_record(ARGV[2]) then
  return 0
end
join(ARGV[2], ARGV[3])
return 1
