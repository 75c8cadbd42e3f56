-- Redis Cluster, invalidate step 1: move the generation of tags that share one slot and set
-- their indexes aside for draining. Deletes no entry: entries live in other slots.
--
-- KEYS[4i - 3]  index of tag i
-- KEYS[4i - 2]  generation of tag i
-- KEYS[4i - 1]  drains of tag i: HASH of indexes set aside and not yet drained -> the
--               generation each invalidation replaced ("*" if it had none)
-- KEYS[4i]      the name index i gets when set aside
-- ARGV[1]       time to live of a generation token, in ms
-- ARGV[2]       how many members of a freshly set-aside index to return
-- ARGV[2 + i]   the new generation token of tag i
--
-- Returns, per index still to drain, {aside, drains, replaced generation, members}: members is
-- the first chunk of an index set aside by this call (false for older ones, left by a caller
-- that died before finishing; cluster_drain.lua reads those).
local gen_ttl = ARGV[1]
local chunk = tonumber(ARGV[2])
local result = {}

for i = 1, #KEYS / 4 do
  local index, generation, drains, aside = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i]
  local replaced = redis.call('GET', generation) or '*'
  redis.call('SET', generation, ARGV[2 + i], 'PX', gen_ttl)
  local fresh = false
  if redis.call('EXISTS', index) == 1 then
    -- From here on new writes start a fresh index, and the old members wait in `aside`.
    redis.call('RENAME', index, aside)
    redis.call('PERSIST', aside)
    redis.call('HSET', drains, aside, replaced)
    fresh = redis.call('ZRANGE', aside, 0, chunk - 1)
  end
  local pending = redis.call('HGETALL', drains)
  for j = 1, #pending, 2 do
    local members = false
    if pending[j] == aside then
      members = fresh
    end
    result[#result + 1] = {pending[j], drains, pending[j + 1], members}
  end
end
return result
