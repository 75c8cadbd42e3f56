-- Raise or lower one mark in the in-progress set of each tag (base .. ':w', see invalidate.lua).
--
-- An invalidation that spans several cache aliases raises its mark in every alias before it
-- invalidates any, and lowers it when all are done: while a tag holds an unexpired member there,
-- write.lua refuses checked writes under it and generations.lua gives it no vouching token, as
-- during a drain. So no fragment or page can be stored in one alias from an entry of another
-- alias that this invalidation has not reached yet.
--
-- KEYS[i]  the in-progress set of tag i (one slot on a Redis Cluster: the caller groups the keys)
-- ARGV[1]  the mark: a member naming the invalidation
-- ARGV[2]  how long the mark may stand, in ms (the drain guard's TTL), so that a caller that dies
--          before lowering it blocks writes no longer than a drain it left would; 0 lowers it
--
-- Returns the number of sets the mark was raised in (or lowered from).
local mark = ARGV[1]
local ttl = tonumber(ARGV[2])
local count = 0
if ttl == 0 then
  for i = 1, #KEYS do
    count = count + redis.call('ZREM', KEYS[i], mark)
  end
  return count
end
local now = redis.call('TIME')
local deadline = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + ttl
for i = 1, #KEYS do
  count = count + redis.call('ZADD', KEYS[i], deadline, mark)
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return count
