-- Redis Cluster, write step 2 of 3: store the entry, unless an invalidation already removed it.
--
-- An invalidation that ran between step 1 (cluster_index.lua) and this call found the entry in
-- a tag index and left a tombstone here listing the generation it replaced. If that generation
-- is one step 1 saw, the value was computed before the invalidation: refuse it.
--
-- KEYS[1]      the entry
-- ARGV[1]      the serialized value
-- ARGV[2]      absolute expiry in ms (the earliest expiry step 1 returned); "0" for none;
--              negative: a time to live in ms instead (an entry without tags)
-- ARGV[3...]   the generation tokens step 1 saw
--
-- Returns 1 when stored, 0 when refused.
-- Keep in step with cluster_store.TOMBSTONE (a test checks that they agree).
local mark = '\0tagcache:tombstone'

if redis.call('GETRANGE', KEYS[1], 0, #mark - 1) == mark then
  local tomb = redis.call('GET', KEYS[1]) .. ','
  -- "*": the invalidation did not know the generation it replaced, so nothing may pass.
  if string.find(tomb, ',*,', 1, true) then
    return 0
  end
  for i = 3, #ARGV do
    if string.find(tomb, ',' .. ARGV[i] .. ',', 1, true) then
      return 0
    end
  end
end

local expiry = tonumber(ARGV[2])
if expiry > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', expiry)
elseif expiry < 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', -expiry)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
