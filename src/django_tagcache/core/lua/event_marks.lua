-- The marks of a consumer of cross-service events (docs/events.md): per tag, the newest
-- sequence number applied from each producer, in a ZSET base .. ':v' (producer -> seq).
-- Single server only (keys are derived from the base keys); on Redis Cluster the consumer
-- sends the same commands pipelined. Each producer is named once per run of its keys, the
-- seqs travel as one string and 'get' answers with one: a batch of a thousand pairs costs the
-- consumer thousands fewer arguments to encode and replies to parse.
--
-- KEYS           the base keys of the tags, grouped by producer (a tag repeated for each of its producers)
-- ARGV[1]        'get': return each key's mark; 'set': raise each key's mark to its seq
-- ARGV[2]        time to live of a mark, in ms ('set')
-- ARGV[3...]     runs of two arguments: a producer, then for 'get' how many of the next keys
--                are its own, for 'set' the seq of each of those keys, joined by ','
-- Returns for 'get' the marks in the order of KEYS, joined by ',' (0 when none); for 'set' #KEYS.
local op, ttl = ARGV[1], ARGV[2]
local marks = {}
local key = 1
for arg = 3, #ARGV, 2 do
  local producer = ARGV[arg]
  if op == 'get' then
    for _ = 1, tonumber(ARGV[arg + 1]) do
      marks[key] = string.format('%d', tonumber(redis.call('ZSCORE', KEYS[key] .. ':v', producer) or 0))
      key = key + 1
    end
  else
    for seq in string.gmatch(ARGV[arg + 1], '%d+') do
      local zset = KEYS[key] .. ':v'
      redis.call('ZADD', zset, 'GT', seq, producer)
      redis.call('PEXPIRE', zset, ttl)
      key = key + 1
    end
  end
end
if op == 'get' then
  return table.concat(marks, ',')
end
return #KEYS
