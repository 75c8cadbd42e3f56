-- Redis Cluster: release a recompute lock if this caller still owns it (it may have expired and
-- been taken). The lock key is declared: in a cluster it need not share the entry's slot.
--
-- KEYS[1]  the lock
-- ARGV[1]  the owner token taken with it
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
