-- Release a recompute lock if this caller still owns it (it may have expired and been taken).
--
-- KEYS[1]  the lock (the entry's key .. ':lock')
-- ARGV[1]  the owner token given to miss.lua
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
