-- Redis Cluster, invalidate step 1: move the generation of tags that share one slot and set
-- their indexes aside for draining. Deletes no entry: entries live in other slots.
--
-- KEYS[6i - 5]  index of tag i
-- KEYS[6i - 4]  generation of tag i
-- KEYS[6i - 3]  drains of tag i: HASH of indexes set aside and not yet drained -> the
--               generation each invalidation replaced ("*" if it had none)
-- KEYS[6i - 2]  the name index i gets when set aside
-- KEYS[6i - 1]  when tag i's last invalidation completed (microseconds on this node's clock)
-- KEYS[6i]      tag i's in-progress set: ZSET of indexes set aside -> deadline in ms;
--               cluster_drain.lua removes one and records the completion when it is empty
-- ARGV[1]       time to live of a generation token, in ms
-- ARGV[2]       how many members of a freshly set-aside index to return
-- ARGV[2 + i]   the new generation token of tag i
-- ARGV[3 + n]   how long an invalidation may drain before writes stop waiting for it, in ms
--
-- Returns, per index still to drain, {aside, drains, replaced generation, members}: members is
-- the first chunk of an index set aside by this call (false for older ones, left by a caller
-- that died before finishing; cluster_drain.lua reads those).
local gen_ttl = ARGV[1]
local chunk = tonumber(ARGV[2])
local result = {}
local ntags = #KEYS / 6
local guard_ttl = tonumber(ARGV[3 + ntags])
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)

for i = 1, ntags do
  local index, generation, drains, aside = KEYS[6 * i - 5], KEYS[6 * i - 4], KEYS[6 * i - 3], KEYS[6 * i - 2]
  local replaced = redis.call('GET', generation) or '*'
  redis.call('SET', generation, ARGV[2 + i], 'PX', gen_ttl)
  local fresh = false
  if redis.call('EXISTS', index) == 1 then
    -- From here on new writes start a fresh index, and the old members wait in `aside`.
    redis.call('RENAME', index, aside)
    redis.call('PERSIST', aside)
    redis.call('HSET', drains, aside, replaced)
    fresh = redis.call('ZRANGE', aside, 0, chunk - 1)
    redis.call('ZADD', KEYS[6 * i], now_ms + guard_ttl, aside)
    redis.call('PEXPIRE', KEYS[6 * i], guard_ttl)
  else
    -- Nothing to remove: complete now (in microseconds).
    redis.call('SET', KEYS[6 * i - 1], now[1] .. string.format('%06d', tonumber(now[2])), 'PX', gen_ttl)
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
