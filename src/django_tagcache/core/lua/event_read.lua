-- Read new entries of a stream for a consumer group, as one JSON text (docs/events.md, "What a
-- batch costs"): [[id, [field, value, ...]], ...]. A client without a C reply parser spends most
-- of a batch parsing Redis' reply, about twenty elements per entry; one string parses at once.
-- Runs on the source's Redis; one key, so one slot on a cluster. Never blocks: the consumer
-- uses it while a backlog lasts, and a blocking XREADGROUP once the stream has run dry.
--
-- KEYS[1]  the stream
-- ARGV[1]  the group
-- ARGV[2]  the consumer
-- ARGV[3]  most entries to read
--
-- Returns the JSON text, or nil when nothing new is left.

local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
if not reply then
  return false
end
return cjson.encode(reply[1][2])
