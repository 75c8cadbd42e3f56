-- Redis Cluster: append the event announcing an invalidation (docs/events.md), after the
-- invalidation's own calls; the counters and the stream share one slot.
--
-- KEYS[1]      the stream
-- KEYS[2]      the hash of sequence counters
-- ARGV[1]      this producer's field in KEYS[2]
-- ARGV[2]      the stream's MAXLEN ~
-- ARGV[3..]    the event's field/value pairs
--
-- Same counter and epoch rules as invalidate.lua. Returns the entry's id.
local now = redis.call('TIME')
local stamp = now[1] .. string.format('%06d', tonumber(now[2]))
local seq = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if seq == 1 then
  redis.call('HSET', KEYS[2], ARGV[1] .. '#epoch', stamp)
end
local epoch = redis.call('HGET', KEYS[2], ARGV[1] .. '#epoch') or stamp
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
  'seq', seq, 'epoch', epoch, 'ts', stamp, unpack(ARGV, 3))
