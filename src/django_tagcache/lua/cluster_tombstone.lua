-- Redis Cluster, invalidate: remove entries of one slot, leaving a short-lived tombstone.
--
-- A writer may have indexed an entry (cluster_index.lua) and not stored it yet; the tombstone
-- tells its cluster_set.lua call which generation this invalidation replaced, so that a value
-- computed before the invalidation is refused instead of landing after it.
--
-- KEYS[i]   entries, all in one slot
-- ARGV[1]   the generation the invalidation replaced ("*" if unknown)
-- ARGV[2]   tombstone time to live, in ms
--
-- Returns how many entries held a value (tombstones do not count).
-- Keep in step with cluster_store.TOMBSTONE (a test checks that they agree).
local mark = '\0tagcache:tombstone'
local most_tokens = 16
local removed = 0

for _, key in ipairs(KEYS) do
  local tomb
  if redis.call('GETRANGE', key, 0, #mark - 1) == mark then
    tomb = redis.call('GET', key)
    local _, tokens = string.gsub(tomb, ',', ',')
    if tokens >= most_tokens then
      -- Bounded: past this many, refuse every in-flight write rather than grow.
      tomb = mark .. ',*'
    else
      tomb = tomb .. ',' .. ARGV[1]
    end
  else
    removed = removed + redis.call('UNLINK', key)
    tomb = mark .. ',' .. ARGV[1]
  end
  redis.call('SET', key, tomb, 'PX', ARGV[2])
end
return removed
