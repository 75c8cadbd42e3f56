-- Read the generation token of each tag, creating the missing ones.
--
-- Called when a read misses, before the value is computed; write.lua later stores the value only
-- if these tokens are unchanged. Creating a missing token here is what lets write.lua treat a
-- missing generation as "moved": no token can come back to an earlier value.
--
-- KEYS[i]          the generation of tag i
-- ARGV[i]          a fresh random token for tag i, used if it has none
-- ARGV[#KEYS + 1]  time to live of a created token, in ms
--
-- Returns the tokens, in KEYS order.
local ttl = ARGV[#KEYS + 1]
local tokens = {}
-- MGET in slices: Lua's unpack() fails past about 8,000 values.
for first = 1, #KEYS, 1000 do
  local last = math.min(first + 999, #KEYS)
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
return tokens
