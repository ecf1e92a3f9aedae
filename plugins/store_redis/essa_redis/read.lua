#!lua flags=no-writes
-- essa-plugin-redis: read the essa lattice value of KEYS[1] in one round trip, whatever its Redis type.
-- Replies nil (no key), {'v', BINCODE} (a value kept whole), {'1', MEMBERS} (a Set, unordered) or
-- {'2', MEMBERS} (an OrderedSet, in byte order); 'ESSABAD TYPE' for a key that holds no essa value.
local key = KEYS[1]
local rtype = redis.call('TYPE', key)['ok']
if rtype == 'none' then
  return false
elseif rtype == 'string' then
  return {'v', redis.call('GET', key)}
elseif rtype == 'set' then
  return {'1', redis.call('SMEMBERS', key)}
elseif rtype == 'zset' then
  return {'2', redis.call('ZRANGE', key, 0, -1)}
end
return redis.error_reply('ESSABAD ' .. rtype)
