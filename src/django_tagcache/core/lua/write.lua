-- Store one entry and add it to the index of each of its tags, in one atomic step.
--
-- KEYS[1]                   the entry
-- KEYS[1 + i]               the base key of tag i: its index (ZSET: entry key -> expiry in ms) is
--                           base .. ':i' and its generation base .. ':g' ('<token>' or, once the
--                           tag was invalidated, '<token>@<completion>'). Deriving them here keeps
--                           the call small; it is the standalone script (the cluster ones differ).
-- ARGV[1]                   the serialized value
-- ARGV[2]                   time to live in ms; "0" stores without expiry
-- ARGV[3]                   "1": store only if every generation still equals the token read at the miss
-- ARGV[4]                   how many expired members to prune from each index (bounded work per write)
-- ARGV[5]                   how long an index outlives its longest-lived member, in ms
-- ARGV[6]                   the owner token of the recompute lock (KEYS[1] .. ':lock') to release,
--                           or '' (stored or refused, the lock is released either way)
-- ARGV[7]                   "1": refuse while an invalidation of a tag is still draining (the tag's
--                           in-progress set base .. ':w' holds an unexpired member)
-- ARGV[8]                   the read fence, in microseconds since the epoch, minus the clock-skew
--                           margin: refuse if a tag's last invalidation completed (recorded in
--                           its generation) at or after it;
--                           "0": no fence (the generations alone vouch for the data); negative:
--                           refuse (a fence older than completion times are kept)
-- ARGV[8 + i]               the generation token of tag i read at the miss (when ARGV[3] is "1")
--
-- Returns 1 when stored, 0 when refused because a tag was invalidated after the data was read.
local entry = KEYS[1]
local ttl = tonumber(ARGV[2])
local check = ARGV[3] == '1'
local prune = tonumber(ARGV[4])
local slack = tonumber(ARGV[5])
local ntags = #KEYS - 1
local guard = ARGV[7] == '1'
local fence = tonumber(ARGV[8])

if ARGV[6] ~= '' and redis.call('GET', entry .. ':lock') == ARGV[6] then
  redis.call('DEL', entry .. ':lock')
end

if fence < 0 then
  return 0 -- a fence older than completion times are kept
end

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if check or fence > 0 then
  for i = 1, ntags do
    -- One read per tag answers both checks: a generation is '<token>@<completion>' once the
    -- tag was invalidated (invalidate.lua), the bare token read at the miss before that.
    local generation = redis.call('GET', KEYS[1 + i] .. ':g')
    -- A missing generation never matches: tokens are created at the miss, so a generation
    -- that disappeared (expiry, eviction) means the reader cannot prove its data is fresh.
    if check and generation ~= ARGV[8 + i] then
      return 0
    end
    if fence > 0 and generation then
      local at = string.find(generation, '@', 1, true)
      if at and tonumber(string.sub(generation, at + 1)) >= fence then
        return 0
      end
    end
  end
end
if guard then
  for i = 1, ntags do
    -- Entries read while an invalidation drains may be old ones not deleted yet: nothing built
    -- while it runs is stored. A crashed invalidator's member expires (DRAIN_GUARD_TTL).
    if redis.call('ZCOUNT', KEYS[1 + i] .. ':w', now_ms, '+inf') > 0 then
      return 0
    end
  end
end
-- A fresh value replaces any copy a soft purge kept.
redis.call('DEL', entry .. ':stale')
local score
if ttl > 0 then
  redis.call('SET', entry, ARGV[1], 'PX', ttl)
  score = now_ms + ttl
else
  redis.call('SET', entry, ARGV[1])
  score = '+inf'
end

for i = 1, ntags do
  local index = KEYS[1 + i] .. ':i'
  -- Only a new member grows the index, so only then is it worth pruning: each new member pays
  -- for removing up to `prune` dead ones, which keeps the index within its live entries.
  if redis.call('ZADD', index, score, entry) == 1 then
    -- Members are scored by expiry, so the expired ones are the lowest ranks.
    local expired = redis.call('ZCOUNT', index, '-inf', '(' .. now_ms)
    if expired > 0 then
      redis.call('ZREMRANGEBYRANK', index, 0, math.min(expired, prune) - 1)
    end
  end
  -- The index outlives its longest-lived member (by the slack). Its TTL only ever needs to grow
  -- here: a new index (no TTL yet, one member) gets this entry's; one without TTL because it
  -- holds an entry that never expires keeps none.
  if ttl == 0 then
    redis.call('PERSIST', index)
  else
    local life = redis.call('PTTL', index)
    if (life >= 0 and life < ttl + slack) or (life == -1 and redis.call('ZCARD', index) == 1) then
      redis.call('PEXPIRE', index, ttl + slack)
    end
  end
end
return 1
