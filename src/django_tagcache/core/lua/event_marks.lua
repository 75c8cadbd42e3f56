-- The marks of a consumer of cross-service events (docs/events.md): per tag, the newest
-- sequence number applied from each producer, in a ZSET base .. ':v' (producer -> seq).
-- Single server only (keys are derived from the base keys); on Redis Cluster the consumer
-- sends the same commands pipelined. The arguments are flat and each producer is named once
-- per run of its keys, and 'get' answers with one string: a batch of a thousand pairs costs
-- the consumer a thousand fewer arguments to encode and replies to parse.
--
-- KEYS           the base keys of the tags, grouped by producer (a tag repeated for each of its producers)
-- ARGV[1]        'get': return each key's mark; 'set': raise each key's mark to its seq
-- ARGV[2]        time to live of a mark, in ms ('set')
-- ARGV[3...]     runs of: a producer, how many of the next keys are its own, and for 'set' the
--                seq of each of those keys
-- Returns for 'get' the marks in the order of KEYS, joined by ',' (0 when none); for 'set' #KEYS.
local op, ttl = ARGV[1], ARGV[2]
local marks = {}
local key, arg = 1, 3
while arg <= #ARGV do
  local producer, count = ARGV[arg], tonumber(ARGV[arg + 1])
  arg = arg + 2
  for _ = 1, count do
    local zset = KEYS[key] .. ':v'
    if op == 'get' then
      marks[key] = string.format('%d', tonumber(redis.call('ZSCORE', zset, producer) or 0))
    else
      redis.call('ZADD', zset, 'GT', ARGV[arg], producer)
      redis.call('PEXPIRE', zset, ttl)
      arg = arg + 1
    end
    key = key + 1
  end
end
if op == 'get' then
  return table.concat(marks, ',')
end
return #KEYS
