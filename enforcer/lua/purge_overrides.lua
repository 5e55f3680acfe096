-- Remove overrides that lapsed by ARGV[1] (unix time), at most ARGV[2] of them, in one step:
-- an override set again with a later expiry between a reader's look and this delete is safe.
-- KEYS[1] the overrides hash, KEYS[2] its expiry index (sorted set, score = expires_at),
-- KEYS[3] the run-time state's version (bumped when anything went, so enforcers reload).
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #lapsed == 0 then
  return 0
end
redis.call('HDEL', KEYS[1], unpack(lapsed))
redis.call('ZREM', KEYS[2], unpack(lapsed))
redis.call('INCR', KEYS[3])
return #lapsed
