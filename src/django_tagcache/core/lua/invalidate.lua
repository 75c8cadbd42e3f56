-- Invalidate tags: move each tag's generation, then delete the entries its index lists.
--
-- KEYS[i]       the base key of tag i, from which this script derives:
--                 base .. ':i'            its index (ZSET of entry keys)
--                 base .. ':g'            its generation: '<token>@<completion>' (see below)
--                 base .. ':p'            its pending set: indexes renamed aside and not yet drained
--                 base .. ':i:' .. token  the name its index gets if too big to delete in this call
--               (one key per tag keeps the call small; this is the standalone script, which also
--               deletes the member entries directly; the cluster scripts declare every key)
-- ARGV[1]       how many entries this call may delete in all (keeps the call short)
-- ARGV[2]       time to live of a generation token, in ms
-- ARGV[3]       how long an invalidation may drain before writes stop waiting for it, in ms
-- ARGV[4]       28 random hex digits: tag i's new generation token is them followed by i in 4 hex
--               digits (32 in all, like every token; one random base per call keeps the call small,
--               and since no base comes back, no tag's token does)
-- ARGV[5]       k, how many staleness budgets follow: 0 when every tag's is 0 (the common case), else n
-- ARGV[5 + i]   (k = n) the staleness budget of tag i in ms: 0 deletes its entries; more keeps each
--               as '<entry>:stale' for that long (at most its own remaining life), for get_or_set
--               to serve while one caller recomputes it (a soft purge)
-- ARGV[6 + k..] only with cross-service events on (docs/events.md): the stream, the hash of
--               sequence counters, this producer's field in it, the stream's MAXLEN ~, then the
--               event's field/value pairs; the event is appended by this same call
--
-- Each tag's generation also records when its last invalidation completed: its value is
-- '<token>@<completion>' (microseconds on this server's clock), one key for both, so that an
-- invalidation writes, and a checked write reads, one key per tag. While an invalidation drains,
-- the generation keeps the previous completion (drain.lua records the new one) and the tag
-- records that one is in progress (base .. ':w': ZSET of renamed indexes -> deadline).
-- write.lua refuses entries whose data may have been read before the completion, or while a
-- drain is in progress.
--
-- Completion times only grow: one that would not be later than the tag's previous one is recorded
-- one microsecond after it, so an invalidation that runs after another always completes after it.
--
-- Returns one flat array, integers first, so that it is cheap to send and to read:
-- {removed, done_1, previous_1, ..., done_n, previous_n, dead_1, pending_1, dead_2, pending_2, ...}:
-- the number of entries deleted; for each tag the completion time recorded now (0 if it drains)
-- and the one it replaced (0 if none), in microseconds, for a saver to date its instance by (see
-- completions.py); then every renamed index still to drain (drain.lua) with the pending set that
-- lists it.
-- A renamed index stays listed in its pending set until drained, so a caller that dies half way
-- leaves work that the next invalidation of the same tag finishes.
local budget = tonumber(ARGV[1])
local gen_ttl = ARGV[2]
local ntags = #KEYS
local removed = 0
local result = {0}
local deads = {}  -- the renamed indexes still to drain, after every tag's completions
local guard_ttl = tonumber(ARGV[3])
local base_token = ARGV[4]
local nbudgets = tonumber(ARGV[5])
local first_event = 6 + nbudgets
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local now_text = string.format('%.0f', now_us)

-- The event announcing this invalidation, in the same call, and first: if appending fails (a key
-- of the wrong type), the call stops before touching any tag, so the two cannot diverge. A counter
-- created afresh (first event, or lost with its key) starts a new epoch, so consumers never take
-- a restarted sequence for an old one.
local stream = ARGV[first_event]
if stream then
  local counters, producer = ARGV[first_event + 1], ARGV[first_event + 2]
  local stamp = now[1] .. string.format('%06d', tonumber(now[2]))
  local seq = redis.call('HINCRBY', counters, producer, 1)
  if seq == 1 then
    redis.call('HSET', counters, producer .. '#epoch', stamp)
  end
  local epoch = redis.call('HGET', counters, producer .. '#epoch') or stamp
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[first_event + 3], '*',
    'seq', seq, 'epoch', epoch, 'ts', stamp, unpack(ARGV, first_event + 4))
end

-- Unfinished drains are rare: one EXISTS over every pending set spares asking each tag's.
local unfinished = false
do
  local pendings = {}
  for i = 1, ntags do
    pendings[i] = KEYS[i] .. ':p'
  end
  for from = 1, ntags, 1000 do
    if redis.call('EXISTS', unpack(pendings, from, math.min(from + 999, ntags))) > 0 then
      unfinished = true
      break
    end
  end
end

-- Delete (budget 0) or soften (keep a stale copy) the entries members[first..last].
local function purge(members, first, last, stale_ms)
  local count = 0
  if stale_ms == 0 then
    local keys = {}
    for j = first, last do
      keys[#keys + 1] = members[j]
      keys[#keys + 1] = members[j] .. ':stale' -- a soft purge's copy must not outlive a hard one
    end
    for from = 1, #keys, 1000 do
      count = count + redis.call('UNLINK', unpack(keys, from, math.min(from + 999, #keys)))
    end
    return count
  end
  for j = first, last do
    local life = redis.call('PTTL', members[j])
    if life ~= -2 then
      local stale = members[j] .. ':stale'
      redis.call('RENAME', members[j], stale)
      if life == -1 or life > stale_ms then
        redis.call('PEXPIRE', stale, stale_ms)
      end
      count = count + 1
    end
  end
  return count
end

for i = 1, ntags do
  local index, generation, pending = KEYS[i] .. ':i', KEYS[i] .. ':g', KEYS[i] .. ':p'
  local token = base_token .. string.format('%04x', i)
  local aside = index .. ':' .. token
  local stale_ms = nbudgets > 0 and tonumber(ARGV[5 + i]) or 0
  local size = redis.call('ZCARD', index)
  local draining = false
  if size > 0 and size <= budget then
    removed = removed + purge(redis.call('ZRANGE', index, 0, -1), 1, size, stale_ms)
    redis.call('DEL', index)
    budget = budget - size
  elseif size > 0 then
    redis.call('RENAME', index, aside)
    redis.call('SADD', pending, aside)
    redis.call('ZADD', KEYS[i] .. ':w', now_ms + guard_ttl, aside)
    redis.call('PEXPIRE', KEYS[i] .. ':w', guard_ttl)
    draining = true
  end
  if draining then
    -- Not complete yet: drain.lua records the completion when the index is empty. Until then the
    -- previous completion still fences writes (past the drain guard's deadline too).
    local previous = redis.call('SET', generation, token, 'PX', gen_ttl, 'GET')
    local at = previous and string.find(previous, '@', 1, true)
    if at then
      redis.call('SET', generation, token .. string.sub(previous, at), 'PX', gen_ttl)
    end
    result[2 * i] = 0
    result[2 * i + 1] = 0
  else
    -- Microsecond times stay below 2^53, so Lua's numbers hold them exactly, and Redis replies
    -- with them as integers.
    local done = now_us
    local replaced = redis.call('SET', generation, token .. '@' .. now_text, 'PX', gen_ttl, 'GET')
    local at = replaced and string.find(replaced, '@', 1, true)
    local previous = at and tonumber(string.sub(replaced, at + 1)) or 0
    if previous >= now_us then
      done = previous + 1
      redis.call('SET', generation, token .. '@' .. string.format('%.0f', done), 'PX', gen_ttl)
    end
    result[2 * i] = done
    result[2 * i + 1] = previous
  end
  if draining or unfinished then
    for _, dead in ipairs(redis.call('SMEMBERS', pending)) do
      deads[#deads + 1] = dead
      deads[#deads + 1] = pending
    end
  end
end

for _, item in ipairs(deads) do
  result[#result + 1] = item
end

result[1] = removed
return result
