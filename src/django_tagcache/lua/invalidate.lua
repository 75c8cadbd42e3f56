-- Invalidate tags: move each tag's generation, then delete the entries its index lists.
--
-- KEYS[i]       the base key of tag i, from which this script derives:
--                 base .. ':i'            its index (ZSET of entry keys)
--                 base .. ':g'            its generation
--                 base .. ':p'            its pending set: indexes renamed aside and not yet drained
--                 base .. ':i:' .. token  the name its index gets if too big to delete in this call
--               (one key per tag keeps the call small; this is the standalone script, which also
--               deletes the member entries directly; the cluster scripts declare every key)
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

for i = 1, #KEYS do
  local index, generation, pending = KEYS[i] .. ':i', KEYS[i] .. ':g', KEYS[i] .. ':p'
  local aside = index .. ':' .. ARGV[2 + i]
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
