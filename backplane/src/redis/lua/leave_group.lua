-- Removes a connection from a group.
--
-- KEYS[1]: group key <p>:hub:{<hub>}:group:<g>:conns
-- ARGV[1]: hub key base    ARGV[2]: connection id    ARGV[3]: group
--
-- Returns 1 if the connection was a member, else 0.

return leave(ARGV[2], ARGV[3])
