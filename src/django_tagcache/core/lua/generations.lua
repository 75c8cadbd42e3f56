-- Read the generation token of each tag, creating the missing ones.
--
-- Called when a read misses, before the value is computed; write.lua later stores the value only
-- if these tokens are unchanged. Creating a missing token here is what lets write.lua treat a
-- missing generation as "moved": no token can come back to an earlier value.
--
-- KEYS[i]          the generation of tag i (n tags)
-- KEYS[n + i]      optional: the in-progress set of tag i (see invalidate.lua). Given, a tag whose
--                  invalidation is still draining gets no token (nil): entries read under it now
--                  may be old ones not deleted yet, so nothing built from them can be vouched for
-- ARGV[i]          a fresh random token for tag i, used if it has none
-- ARGV[n + 1]      time to live of a created token, in ms
--
-- Returns the tokens, in KEYS order.
local n = #ARGV - 1
local ttl = ARGV[n + 1]
local tokens = {}
-- MGET in slices: Lua's unpack() fails past about 8,000 values.
for first = 1, n, 1000 do
  local last = math.min(first + 999, n)
  local found = redis.call('MGET', unpack(KEYS, first, last))
  for i = first, last do
    local token = found[i - first + 1]
    if not token then
      token = ARGV[i]
      redis.call('SET', KEYS[i], token, 'PX', ttl)
    end
    tokens[i] = token
  end
end
if #KEYS > n then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  for i = 1, n do
    if redis.call('ZCOUNT', KEYS[n + i], now_ms, '+inf') > 0 then
      tokens[i] = false
    end
  end
end
return tokens
