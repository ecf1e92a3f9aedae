#!lua
-- essa-plugin-redis: merge one essa lattice value into KEYS[1], atomically, on the server.
--
-- The rules are essa.lattice's, on the bincode of docs/lattice-encoding.md;
-- tests/store check them byte for byte against essa's own merge. The client
-- has already decoded the incoming value (refusing bad bytes) and sends it in
-- one of two shapes:
--
--   ARGV = {'s', TAG, MEMBER...}  a Set (TAG 1, kept as a Redis set) or an
--                                 OrderedSet (TAG 2, a sorted set whose
--                                 scores are all 0, so ordered by the bytes)
--   ARGV = {'v', VALUE}           any other lattice, canonical bincode, kept
--                                 whole in a Redis string
--
-- An empty Set or OrderedSet is a string holding its bincode until its first
-- member arrives. Replies 1 if the stored value changed, 0 if not; refuses a
-- value of another lattice type with the error 'ESSATYPE STORED INCOMING
-- [HEXKEY...]' (the keys of the Map entries where the types differ) and a key
-- that does not hold an essa value with 'ESSABAD WHAT'. Refused merges
-- change nothing. The shebang (no flags) makes Redis refuse the whole script
-- up front when it is out of memory, never half of it.

local key = KEYS[1]
local sbyte, ssub, schar, floor = string.byte, string.sub, string.char, math.floor

local function fail(message)
  error({err = message})
end

local function hex(s)
  return (string.gsub(s, '.', function(c) return string.format('%02x', sbyte(c)) end))
end

local function type_error(stored, incoming, path)
  local parts = {'ESSATYPE', tostring(stored), tostring(incoming)}
  for i = 1, #path do parts[#parts + 1] = hex(path[i]) end
  fail(table.concat(parts, ' '))
end

-- byte order (memcmp, shorter first on a common prefix), never the locale's collation
local function cmp(a, b)
  if a == b then return 0 end
  local la, lb = #a, #b
  local n = la < lb and la or lb
  local i, step = 1, 64
  while i <= n do
    local j = i + step - 1
    if j > n then j = n end
    if ssub(a, i, j) ~= ssub(b, i, j) then
      for k = i, j do
        local x, y = sbyte(a, k), sbyte(b, k)
        if x ~= y then
          if x < y then return -1 end
          return 1
        end
      end
    end
    i = j + 1
    if step < 65536 then step = step * 2 end
  end
  if la < lb then return -1 end
  if la > lb then return 1 end
  return 0
end

-- two u64 kept as their 8 little-endian bytes: compared exactly, from the top byte
local function cmp_u64(a, b)
  if a == b then return 0 end
  for k = 8, 1, -1 do
    local x, y = sbyte(a, k), sbyte(b, k)
    if x ~= y then
      if x < y then return -1 end
      return 1
    end
  end
  return 0
end

-- canonical RFC 3339 text (YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z) -> 23 digits in time order
local function ts_key(ts)
  local frac = ''
  if #ts > 20 then frac = ssub(ts, 21, #ts - 1) end
  return ssub(ts, 1, 4) .. ssub(ts, 6, 7) .. ssub(ts, 9, 10) .. ssub(ts, 12, 13) .. ssub(ts, 15, 16)
    .. ssub(ts, 18, 19) .. frac .. string.rep('0', 9 - #frac)
end

-- -- decoding ------------------------------------------------------------------

local function u32(s, p)
  local a, b, c, d = sbyte(s, p, p + 3)
  if not d then fail('ESSABAD truncated') end
  return a + b * 256 + c * 65536 + d * 16777216
end

local function u64(s, p)
  return u32(s, p) + u32(s, p + 4) * 4294967296
end

local function rd_bytes(s, p)
  local n = u64(s, p)
  if p + 7 + n > #s then fail('ESSABAD truncated') end
  return ssub(s, p + 8, p + 7 + n), p + 8 + n
end

local function rd_list(s, p)
  local n = u64(s, p)
  p = p + 8
  local t = {}
  for i = 1, n do t[i], p = rd_bytes(s, p) end
  return t, p
end

local function rd_clock(s, p)
  local n = u64(s, p)
  p = p + 8
  local t = {}
  for i = 1, n do
    local node
    node, p = rd_bytes(s, p)
    t[i] = {node, ssub(s, p, p + 7)}
    p = p + 8
  end
  return t, p
end

local decode
decode = function(s, p)
  local tag = u32(s, p)
  p = p + 4
  local v = {tag = tag}
  if tag == 0 then
    v.ts, p = rd_bytes(s, p)
    v.val, p = rd_bytes(s, p)
  elseif tag == 1 or tag == 2 then
    v.m, p = rd_list(s, p)
  elseif tag == 3 then
    v.clock, p = rd_clock(s, p)
    v.m, p = rd_list(s, p)
  elseif tag == 4 then
    v.clock, p = rd_clock(s, p)
    local n = u64(s, p)
    p = p + 8
    v.deps = {}
    for i = 1, n do
      local k, c
      k, p = rd_bytes(s, p)
      c, p = rd_clock(s, p)
      v.deps[i] = {k, c}
    end
    v.m, p = rd_list(s, p)
  elseif tag == 5 then
    v.n = ssub(s, p, p + 7)
    p = p + 8
  elseif tag == 6 then
    v.b = sbyte(s, p)
    p = p + 1
  elseif tag == 7 then
    local n = u64(s, p)
    p = p + 8
    v.e = {}
    for i = 1, n do
      local k, x
      k, p = rd_bytes(s, p)
      x, p = decode(s, p)
      v.e[i] = {k, x}
    end
  else
    fail('ESSABAD tag ' .. tag)
  end
  return v, p
end

-- -- encoding ------------------------------------------------------------------

local function p32(n)
  return schar(n % 256, floor(n / 256) % 256, floor(n / 65536) % 256, floor(n / 16777216) % 256)
end

local function p64(n)
  return p32(n % 4294967296) .. p32(floor(n / 4294967296))
end

local function w_bytes(out, b)
  out[#out + 1] = p64(#b)
  out[#out + 1] = b
end

local function w_list(out, t)
  out[#out + 1] = p64(#t)
  for i = 1, #t do w_bytes(out, t[i]) end
end

local function w_clock(out, c)
  out[#out + 1] = p64(#c)
  for i = 1, #c do
    w_bytes(out, c[i][1])
    out[#out + 1] = c[i][2]
  end
end

local encode_into
encode_into = function(out, v)
  local tag = v.tag
  out[#out + 1] = p32(tag)
  if tag == 0 then
    w_bytes(out, v.ts)
    w_bytes(out, v.val)
  elseif tag == 1 or tag == 2 then
    w_list(out, v.m)
  elseif tag == 3 then
    w_clock(out, v.clock)
    w_list(out, v.m)
  elseif tag == 4 then
    w_clock(out, v.clock)
    out[#out + 1] = p64(#v.deps)
    for i = 1, #v.deps do
      w_bytes(out, v.deps[i][1])
      w_clock(out, v.deps[i][2])
    end
    w_list(out, v.m)
  elseif tag == 5 then
    out[#out + 1] = v.n
  elseif tag == 6 then
    out[#out + 1] = schar(v.b)
  else
    out[#out + 1] = p64(#v.e)
    for i = 1, #v.e do
      w_bytes(out, v.e[i][1])
      encode_into(out, v.e[i][2])
    end
  end
end

local function encode(v)
  local out = {}
  encode_into(out, v)
  return table.concat(out)
end

-- -- merging: essa.lattice's rules ----------------------------------------------

-- union of two lists sorted by byte order, without duplicates
local function union(a, b)
  local out, i, j, na, nb = {}, 1, 1, #a, #b
  while i <= na and j <= nb do
    local c = cmp(a[i], b[j])
    if c < 0 then
      out[#out + 1] = a[i]; i = i + 1
    elseif c > 0 then
      out[#out + 1] = b[j]; j = j + 1
    else
      out[#out + 1] = a[i]; i = i + 1; j = j + 1
    end
  end
  for k = i, na do out[#out + 1] = a[k] end
  for k = j, nb do out[#out + 1] = b[k] end
  return out
end

-- union of two lists of {key, value} sorted by key; combine(a, b, key) merges the values of a common key
local function keyed_union(a, b, combine)
  local out, i, j, na, nb = {}, 1, 1, #a, #b
  while i <= na and j <= nb do
    local c = cmp(a[i][1], b[j][1])
    if c < 0 then
      out[#out + 1] = a[i]; i = i + 1
    elseif c > 0 then
      out[#out + 1] = b[j]; j = j + 1
    else
      out[#out + 1] = {a[i][1], combine(a[i][2], b[j][2], a[i][1])}; i = i + 1; j = j + 1
    end
  end
  for k = i, na do out[#out + 1] = a[k] end
  for k = j, nb do out[#out + 1] = b[k] end
  return out
end

local function max_counter(x, y)
  if cmp_u64(y, x) > 0 then return y end
  return x
end

local function clock_merge(a, b)
  return keyed_union(a, b, max_counter)
end

local function clock_eq(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i][1] ~= b[i][1] or a[i][2] ~= b[i][2] then return false end
  end
  return true
end

local merge
merge = function(loc, inc, path)
  local tag = loc.tag
  if tag ~= inc.tag then type_error(tag, inc.tag, path) end
  if tag == 0 then
    local c = cmp(ts_key(inc.ts), ts_key(loc.ts))
    if c == 0 then c = cmp(inc.val, loc.val) end
    if c > 0 then return inc end
    return loc
  elseif tag == 1 or tag == 2 then
    return {tag = tag, m = union(loc.m, inc.m)}
  elseif tag == 3 or tag == 4 then
    local clock = clock_merge(loc.clock, inc.clock)
    if not clock_eq(loc.clock, inc.clock) then  -- equal clocks count as concurrent
      if clock_eq(clock, inc.clock) then return inc end
      if clock_eq(clock, loc.clock) then return loc end
    end
    local v = {tag = tag, clock = clock, m = union(loc.m, inc.m)}
    if tag == 4 then v.deps = keyed_union(loc.deps, inc.deps, clock_merge) end
    return v
  elseif tag == 5 then
    if cmp_u64(inc.n, loc.n) > 0 then return inc end
    return loc
  elseif tag == 6 then
    if inc.b == 1 then return inc end
    return loc
  end
  return {tag = 7, e = keyed_union(loc.e, inc.e, function(x, y, k)
    local inner = {}
    for i = 1, #path do inner[i] = path[i] end
    inner[#inner + 1] = k
    return merge(x, y, inner)
  end)}
end

-- -- the key ---------------------------------------------------------------------

local SET_TYPES = {set = 1, zset = 2}

local rtype = redis.call('TYPE', key)['ok']
local mode = ARGV[1]

if mode == 's' then
  local tag = tonumber(ARGV[2])
  local count = #ARGV - 2
  local want = tag == 1 and 'set' or 'zset'
  if rtype == 'none' then
    if count == 0 then
      redis.call('SET', key, p32(tag) .. p64(0))
      return 1
    end
  elseif rtype == 'string' then
    local head = redis.call('GETRANGE', key, 0, 11)
    local stored = u32(head, 1)
    if stored ~= tag then type_error(stored, tag, {}) end
    if count == 0 then return 0 end
    if u64(head, 5) ~= 0 then fail('ESSABAD string') end  -- a set with members is never a string
    redis.call('DEL', key)
  elseif rtype ~= want then
    local stored = SET_TYPES[rtype]
    if not stored then fail('ESSABAD ' .. rtype) end
    type_error(stored, tag, {})
  elseif count == 0 then
    return 0
  end
  local added = 0
  if tag == 1 then
    for i = 3, #ARGV, 4000 do
      local j = i + 3999
      if j > #ARGV then j = #ARGV end
      added = added + redis.call('SADD', key, unpack(ARGV, i, j))
    end
  else
    for i = 3, #ARGV, 2000 do
      local args = {}
      local j = i + 1999
      if j > #ARGV then j = #ARGV end
      for k = i, j do
        args[#args + 1] = '0'
        args[#args + 1] = ARGV[k]
      end
      added = added + redis.call('ZADD', key, unpack(args))
    end
  end
  if added > 0 or rtype ~= want then return 1 end
  return 0
end

local incoming = ARGV[2]
if rtype == 'none' then
  redis.call('SET', key, incoming)
  return 1
end
local itag = u32(incoming, 1)
if SET_TYPES[rtype] then type_error(SET_TYPES[rtype], itag, {}) end
if rtype ~= 'string' then fail('ESSABAD ' .. rtype) end
local head = redis.call('GETRANGE', key, 0, 63)
local stag = u32(head, 1)
if stag > 7 then fail('ESSABAD tag ' .. stag) end
if stag ~= itag then type_error(stag, itag, {}) end
if stag == 0 then
  -- Lww: the timestamps decide without reading the stored value, unless they are equal
  local ts = ssub(head, 13, 12 + u64(head, 5))
  local c = cmp(ts_key(rd_bytes(incoming, 5)), ts_key(ts))
  if c < 0 then return 0 end
  if c > 0 then
    redis.call('SET', key, incoming)
    return 1
  end
end
local old = redis.call('GET', key)
if old == incoming then return 0 end
local merged = encode(merge(decode(old, 1), decode(incoming, 1), {}))
if merged == old then return 0 end
redis.call('SET', key, merged)
return 1
