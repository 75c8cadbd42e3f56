-- Remove a consumer that stopped reading from a consumer group (docs/events.md) without losing
-- what it had read: its pending entries are claimed for the caller first, and the consumer is
-- deleted only once it holds none, in this same atomic call (XGROUP DELCONSUMER would drop them).
-- Runs on the source's Redis; one key, so one slot on a cluster.
--
-- KEYS[1]  the stream
-- ARGV[1]  the group
-- ARGV[2]  the idle consumer
-- ARGV[3]  the consumer taking its entries over (the caller)
-- ARGV[4]  how long the consumer, and each entry taken, must have been idle, in ms
-- ARGV[5]  most entries to claim in this call (the rest on the next one)
--
-- Returns {entries claimed, 1 if the consumer was removed else 0}.
local min_idle = tonumber(ARGV[4])
local idle = nil
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, seen = nil, nil
  for i = 1, #consumer, 2 do
    if consumer[i] == 'name' then
      name = consumer[i + 1]
    elseif consumer[i] == 'idle' then
      seen = consumer[i + 1]
    end
  end
  if name == ARGV[2] then
    idle = seen
  end
end
if idle == nil or idle < min_idle then
  return {0, 0} -- gone already, or it read again: alive
end
local ids = {}
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', min_idle, '-', '+', ARGV[5], ARGV[2])
for i, entry in ipairs(pending) do
  ids[i] = entry[1]
end
if #ids > 0 then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], min_idle, unpack(ids))
end
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
  return {#ids, 0} -- more than one call's worth, or entries not idle long enough: not yet
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return {#ids, 1}
