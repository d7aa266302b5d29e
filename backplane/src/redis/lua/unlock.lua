-- Releases a lock if the caller still holds it.
--
-- KEYS[1]: the lock (<p>:sweep:<n>)
-- ARGV[1]: the holder's id
--
-- Returns 1 if released, else 0.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
