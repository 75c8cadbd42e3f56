-- Delete the next chunk of entries listed by an index that invalidate.lua renamed aside.
--
-- KEYS[1]  the renamed index
-- KEYS[2]  the pending set of its tag
-- ARGV[1]  how many entries to delete in this call
--
-- Returns {removed, left}: entries deleted now, and members still listed.
local chunk = tonumber(ARGV[1])
local members = redis.call('ZRANGE', KEYS[1], 0, chunk - 1)
local removed = 0
for first = 1, #members, 1000 do
  removed = removed + redis.call('UNLINK', unpack(members, first, math.min(first + 999, #members)))
end
if #members > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #members - 1)
end
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then
  redis.call('SREM', KEYS[2], KEYS[1])
end
return {removed, left}
