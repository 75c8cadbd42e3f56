-- Invalidate tags: move each tag's generation, then delete the entries its index lists.
--
-- KEYS[4i - 3]  index of tag i (ZSET of entry keys)
-- KEYS[4i - 2]  generation of tag i
-- KEYS[4i - 1]  pending set of tag i: indexes renamed aside and not yet fully drained
-- KEYS[4i]      the name index i gets if it is too big to delete in this call
-- ARGV[1]       how many entries this call may delete in all (keeps the call short)
-- ARGV[2]       time to live of a generation token, in ms
-- ARGV[2 + i]   the new generation token of tag i
--
-- Returns {removed, dead_1, pending_1, dead_2, pending_2, ...}: the number of entries deleted,
-- then every renamed index still to drain (drain.lua) with the pending set that lists it.
-- A renamed index stays listed in its pending set until drained, so a caller that dies half way
-- leaves work that the next invalidation of the same tag finishes.
local budget = tonumber(ARGV[1])
local gen_ttl = ARGV[2]
local removed = 0
local result = {0}

for i = 1, #KEYS / 4 do
  local index, generation, pending, aside = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i]
  redis.call('SET', generation, ARGV[2 + i], 'PX', gen_ttl)
  local size = redis.call('ZCARD', index)
  if size > 0 and size <= budget then
    local members = redis.call('ZRANGE', index, 0, -1)
    -- unpack() is bounded by the Lua stack: delete in slices.
    for first = 1, size, 1000 do
      removed = removed + redis.call('UNLINK', unpack(members, first, math.min(first + 999, size)))
    end
    redis.call('DEL', index)
    budget = budget - size
  elseif size > 0 then
    redis.call('RENAME', index, aside)
    redis.call('SADD', pending, aside)
  end
  if redis.call('SCARD', pending) > 0 then
    for _, dead in ipairs(redis.call('SMEMBERS', pending)) do
      result[#result + 1] = dead
      result[#result + 1] = pending
    end
  end
end

result[1] = removed
return result
