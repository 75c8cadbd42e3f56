-- Redis Cluster, invalidate: acknowledge drained members of an index set aside, fetch the next.
--
-- The caller tombstoned (cluster_tombstone.lua) the members it got last time; only now are
-- they removed from the set-aside index, so a caller that dies half way leaves them listed for
-- the next invalidation of the tag to finish.
--
-- KEYS[1]      the set-aside index
-- KEYS[2]      the drains hash of its tag
-- KEYS[3]      the tag's in-progress set (see cluster_invalidate.lua)
-- KEYS[4]      when the tag's last invalidation completed
-- ARGV[1]      how many members to return
-- ARGV[2]      time to live of the completion time, in ms (the generation's)
-- ARGV[3...]   members done with (may be none)
--
-- Returns the next members; none once the index is empty, which is then forgotten and its
-- invalidation recorded as complete.
local chunk = tonumber(ARGV[1])
for first = 3, #ARGV, 1000 do
  redis.call('ZREM', KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
local members = redis.call('ZRANGE', KEYS[1], 0, chunk - 1)
if #members == 0 then
  redis.call('HDEL', KEYS[2], KEYS[1])
  redis.call('ZREM', KEYS[3], KEYS[1])
  local now = redis.call('TIME')
  redis.call('SET', KEYS[4], now[1] .. string.format('%06d', tonumber(now[2])), 'PX', ARGV[2])
end
return members
