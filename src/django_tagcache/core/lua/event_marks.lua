-- The marks of a consumer of cross-service events (docs/events.md): per tag, the newest
-- sequence number applied from each producer, in a ZSET base .. ':v' (producer -> seq).
-- Single server only (keys are derived from the base keys); on Redis Cluster the consumer
-- sends the same commands pipelined.
--
-- KEYS[i]        the base key of a tag (repeated for a tag with several producers)
-- ARGV[1]        'get': return each pair's mark (0 when none); 'set': raise each mark to seq
-- ARGV[2]        time to live of a mark, in ms ('set')
-- ARGV[2 + i]    the producer of pair i ('get'), or ARGV[1 + 2i], ARGV[2 + 2i] its producer and seq ('set')
local marks = {}
if ARGV[1] == 'get' then
  for i = 1, #KEYS do
    marks[i] = tonumber(redis.call('ZSCORE', KEYS[i] .. ':v', ARGV[2 + i]) or 0)
  end
  return marks
end
for i = 1, #KEYS do
  local key = KEYS[i] .. ':v'
  redis.call('ZADD', key, 'GT', ARGV[2 * i + 2], ARGV[2 * i + 1])
  redis.call('PEXPIRE', key, ARGV[2])
end
return #KEYS
