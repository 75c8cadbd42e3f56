-- Prepare a miss: read the tags' generations, try to become the one caller that recomputes the
-- entry, and look again for the entry (another caller may have stored it meanwhile).
--
-- KEYS[1]          the entry; its lock is KEYS[1] .. ':lock' (standalone script: derived here)
-- KEYS[1 + i]      the base key of tag i; its generation is base .. ':g'
-- ARGV[1]          a random owner token for the lock, or '' to skip locking
-- ARGV[2]          lock time to live, in ms
-- ARGV[3]          time to live of a created generation token, in ms
-- ARGV[4]          "1": a tag whose invalidation is still draining (its in-progress set
--                  base .. ':w' holds an unexpired member) gets the token '', which no write
--                  accepts: old entries under it are still readable, so nothing computed now
--                  can be vouched for, even if it is written after the drain has ended
-- ARGV[4 + i]      a fresh random token for tag i, used if it has none
--
-- Returns {locked, entry, stale, token_1, token_2, ...}: locked is 1 if this caller holds the
-- lock; entry is the stored payload if the entry exists now, else false; stale is the copy a soft
-- purge kept ('<entry>:stale', see invalidate.lua), else false.
local tokens = {}
local now_ms = nil
for i = 2, #KEYS do
  local generation = KEYS[i] .. ':g'
  local token = redis.call('GET', generation)
  if not token then
    token = ARGV[3 + i]
    redis.call('SET', generation, token, 'PX', ARGV[3])
  end
  if ARGV[4] == '1' then
    if not now_ms then
      local now = redis.call('TIME')
      now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    end
    if redis.call('ZCOUNT', KEYS[i] .. ':w', now_ms, '+inf') > 0 then
      token = ''
    end
  end
  tokens[#tokens + 1] = token
end
local locked = 0
if ARGV[1] ~= '' and redis.call('SET', KEYS[1] .. ':lock', ARGV[1], 'NX', 'PX', ARGV[2]) then
  locked = 1
end
-- Appended one by one, not with unpack(): Lua's unpack() fails past about 8,000 values.
local result = {locked, redis.call('GET', KEYS[1]), redis.call('GET', KEYS[1] .. ':stale')}
for i = 1, #tokens do
  result[3 + i] = tokens[i]
end
return result
