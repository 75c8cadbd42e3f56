-- Redis Cluster, write step 1 of 3: add an entry to the indexes of its tags that share one slot.
--
-- The entry lives in another slot, so it is stored afterwards (cluster_set.lua); adding it to
-- the indexes first means no entry ever exists that its tags do not reach.
--
-- KEYS[4i - 3], KEYS[4i - 2]  index (ZSET: entry key -> expiry in ms) and generation of tag i
-- KEYS[4i - 1], KEYS[4i]      when tag i's last invalidation completed, and its in-progress
--                          set (see cluster_invalidate.lua)
-- ARGV[1]                  the entry key (the index member)
-- ARGV[2]                  time to live in ms; "0" means no expiry
-- ARGV[3]                  "1": go on only if every generation equals ARGV[6 + i] (read at the miss)
--                          "0": create a missing generation as ARGV[6 + i]
-- ARGV[4]                  how many expired members to prune from each index
-- ARGV[5]                  how long an index outlives its longest-lived member, in ms
-- ARGV[6]                  time to live of a created generation, in ms
-- ARGV[7]                  "1": refuse while an invalidation of a tag is still draining
-- ARGV[8]                  the read fence minus the clock-skew margin, in microseconds: refuse
--                          if a tag's last invalidation completed at or after it; "0": no fence
-- ARGV[8 + i]              a token per tag, see ARGV[3]
--
-- Returns {0} when refused (a generation moved), else {1, expiry, token_1, token_2, ...}: the
-- expiry in ms on this node's clock ("inf" for none), which the entry is stored with, and the
-- generations seen now, which step 3 compares and cluster_set.lua checks tombstones against.
local entry = ARGV[1]
local ttl = tonumber(ARGV[2])
local check = ARGV[3] == '1'
local prune = tonumber(ARGV[4])
local slack = tonumber(ARGV[5])
local gen_ttl = ARGV[6]
local guard = ARGV[7] == '1'
local fence = tonumber(ARGV[8])
local ntags = #KEYS / 4
local seen = {}
if fence < 0 then
  return {0} -- a fence older than completion times are kept
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)

for i = 1, ntags do
  local token = redis.call('GET', KEYS[4 * i - 2])
  if check then
    -- A missing generation never matches: it was created at the miss, so it disappearing
    -- (expiry, eviction) means the reader cannot prove its data is fresh.
    if token ~= ARGV[8 + i] then
      return {0}
    end
  elseif not token then
    token = ARGV[8 + i]
    redis.call('SET', KEYS[4 * i - 2], token, 'PX', gen_ttl)
  end
  if guard and redis.call('ZCOUNT', KEYS[4 * i], now_ms, '+inf') > 0 then
    return {0}
  end
  if fence > 0 then
    local done = redis.call('GET', KEYS[4 * i - 1])
    if done and tonumber(done) >= fence then
      return {0}
    end
  end
  seen[i] = token
end
local score = 'inf'
if ttl > 0 then
  score = now_ms + ttl
end

for i = 1, ntags do
  local index = KEYS[4 * i - 3]
  redis.call('ZADD', index, score, entry)
  -- Members are scored by expiry, so the expired ones are the lowest ranks.
  local expired = redis.call('ZCOUNT', index, '-inf', '(' .. now_ms)
  if expired > 0 then
    redis.call('ZREMRANGEBYRANK', index, 0, math.min(expired, prune) - 1)
  end
  -- The index lives exactly as long as its longest-lived member (plus slack).
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] == 'inf' then
    redis.call('PERSIST', index)
  else
    redis.call('PEXPIREAT', index, tonumber(last[2]) + slack)
  end
end

local result = {1, tostring(score)}
for i = 1, ntags do
  result[#result + 1] = seen[i]
end
return result
