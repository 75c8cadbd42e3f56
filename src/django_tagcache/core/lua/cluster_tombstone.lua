-- Redis Cluster, invalidate: remove entries of one slot, leaving a short-lived tombstone.
--
-- A writer may have indexed an entry (cluster_index.lua) and not stored it yet; the tombstone
-- tells its cluster_set.lua call which generations this invalidation replaced, so that a value
-- computed before the invalidation is refused instead of landing after it.
--
-- KEYS[i]       entries, all in one slot, each named once
-- ARGV[1]       tombstone time to live, in ms
-- ARGV[1 + i]   the generations this invalidation replaced among the tags of KEYS[i], comma
--               separated ("*" for one it did not know)
--
-- Returns how many entries held a value (tombstones do not count).
-- Keep in step with cluster_store.TOMBSTONE (a test checks that they agree).
local mark = '\0tagcache:tombstone'
-- Tokens kept from earlier invalidations: past this many, refuse every in-flight write instead.
-- One invalidation's own tokens are always listed, however many tags of the entry it names.
local most_tokens = 16
local removed = 0

for i, key in ipairs(KEYS) do
  local tomb
  if redis.call('GETRANGE', key, 0, #mark - 1) == mark then
    tomb = redis.call('GET', key)
    local _, tokens = string.gsub(tomb, ',', ',')
    if tokens >= most_tokens then
      tomb = mark .. ',*'
    end
    tomb = tomb .. ',' .. ARGV[1 + i]
  else
    removed = removed + redis.call('UNLINK', key)
    tomb = mark .. ',' .. ARGV[1 + i]
  end
  redis.call('SET', key, tomb, 'PX', ARGV[1])
end
return removed
