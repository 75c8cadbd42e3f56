-- Delete the next chunk of entries listed by an index that invalidate.lua renamed aside.
--
-- KEYS[1]  the renamed index
-- KEYS[2]  the pending set of its tag
-- ARGV[1]  how many entries to delete in this call
-- ARGV[2]  the tag's staleness budget in ms: 0 deletes; more keeps '<entry>:stale' (see invalidate.lua)
-- ARGV[3]  time to live of the tag's generation, in ms
--
-- When the index is empty, the invalidation that renamed it is complete: it leaves the tag's
-- in-progress set (base .. ':w') and its completion time (microseconds) is recorded in the tag's
-- generation (base .. ':g', '<token>@<completion>', see invalidate.lua), the base being the
-- pending set's key without its ':p' (standalone script: derived here). That changes the
-- generation's value: a write checked against it as read during the drain is refused, as the
-- drain guard refused it until now.
-- Returns {removed, left}: entries deleted now, and members still listed.
local chunk = tonumber(ARGV[1])
local stale_ms = tonumber(ARGV[2] or '0')
local members = redis.call('ZRANGE', KEYS[1], 0, chunk - 1)
local removed = 0
if stale_ms == 0 then
  local keys = {}
  for j = 1, #members do
    keys[#keys + 1] = members[j]
    keys[#keys + 1] = members[j] .. ':stale'
  end
  for first = 1, #keys, 1000 do
    removed = removed + redis.call('UNLINK', unpack(keys, first, math.min(first + 999, #keys)))
  end
else
  for j = 1, #members do
    local life = redis.call('PTTL', members[j])
    if life ~= -2 then
      redis.call('RENAME', members[j], members[j] .. ':stale')
      if life == -1 or life > stale_ms then
        redis.call('PEXPIRE', members[j] .. ':stale', stale_ms)
      end
      removed = removed + 1
    end
  end
end
if #members > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #members - 1)
end
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then
  redis.call('SREM', KEYS[2], KEYS[1])
  local base = string.sub(KEYS[2], 1, -3)
  local now = redis.call('TIME')
  redis.call('ZREM', base .. ':w', KEYS[1])
  local generation = redis.call('GET', base .. ':g')
  -- Gone (expired): the token this index was set aside under (its name's last part) stands in.
  local token = generation or string.match(KEYS[1], ':([^:]*)$')
  local at = string.find(token, '@', 1, true)
  -- Completion times only grow (see invalidate.lua).
  local done = tonumber(now[1]) * 1000000 + tonumber(now[2])
  if at then
    local previous = tonumber(string.sub(token, at + 1))
    if previous and previous >= done then
      done = previous + 1
    end
    token = string.sub(token, 1, at - 1)
  end
  redis.call('SET', base .. ':g', token .. '@' .. string.format('%.0f', done), 'PX', ARGV[3])
end
return {removed, left}
