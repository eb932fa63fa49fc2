-- Rolling-window series, the prelude of apply.lua and rolling_read.lua
-- (docs/decisions/0021-rolling-windows-in-log-time.md).
--
-- A series is two keys:
--   the hash   booking time (ms) -> amount; `window_ms`, the longest window
--              asked of it; `windows`, every window length asked (comma
--              separated); per window length w, `sum:w`, the total of the
--              bookings after `edge:w`
--   stamps     a sorted set of its booking times (member and score)
-- A window's total at `now` is its sum moved to the edge now - w (by the
-- bookings between the two edges: those that aged out since, or, with a
-- clock set back, came back in) less the bookings after now: a few
-- bookings, never the whole window. A series written before the stamps
-- existed (a hash alone) is read by a scan and gets its stamps at its next
-- booking.

local rolling = {}

-- Integers as Redis reads them (no exponent).
local function num(x)
  return string.format('%.0f', x)
end

-- Adds delta to a hash field, floored at zero (not HINCRBY: amounts are
-- u64, past its i64); its value before and after. apply.lua's counters
-- use it too.
local function add(key, field, delta)
  local before = tonumber(redis.call('HGET', key, field) or '0')
  local after = math.max(before + delta, 0)
  redis.call('HSET', key, field, num(after))
  return before, after
end

-- Booking times are read and dropped this many at a time (unpack's limit).
local CHUNK = 1000

-- Drops the bookings at or before `oldest`.
local function drop_through(key, stamps, oldest)
  while true do
    local times = redis.call('ZRANGEBYSCORE', stamps, '-inf', num(oldest), 'LIMIT', 0, CHUNK)
    if #times == 0 then return end
    redis.call('HDEL', key, unpack(times))
    redis.call('ZREM', stamps, unpack(times))
  end
end

-- The total booked in (from, to] ('+inf': no upper bound), read CHUNK
-- bookings at a time.
local function between(key, stamps, from, to)
  local total, offset = 0, 0
  while true do
    local times = redis.call('ZRANGEBYSCORE', stamps, '(' .. num(from), to, 'LIMIT', offset, CHUNK)
    if #times == 0 then return total end
    for _, amount in ipairs(redis.call('HMGET', key, unpack(times))) do
      total = total + (tonumber(amount) or 0)
    end
    if #times < CHUNK then return total end
    offset = offset + CHUNK
  end
end

local function windows_of(key)
  local windows = {}
  for w in string.gmatch(redis.call('HGET', key, 'windows') or '', '[^,]+') do
    windows[#windows + 1] = tonumber(w)
  end
  return windows
end

local function stamped(stamps)
  return redis.call('EXISTS', stamps) == 1
end

-- The total of a series without stamps in (from, to], by a scan.
local function scanned(key, from, to)
  local total = 0
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local at = tonumber(fields[i])
    if at and at > from and at <= to then total = total + tonumber(fields[i + 1]) end
  end
  return total
end

-- Window w's total at now, and the sum it has at the edge now - w.
local function window(key, stamps, w, now)
  local edge_to = now - w
  local kept = redis.call('HMGET', key, 'sum:' .. num(w), 'edge:' .. num(w))
  local sum, edge = tonumber(kept[1]), tonumber(kept[2])
  if not sum or not edge then
    sum = between(key, stamps, edge_to, '+inf')
  elseif edge < edge_to then
    sum = sum - between(key, stamps, edge, num(edge_to))
  elseif edge > edge_to then
    sum = sum + between(key, stamps, edge_to, num(edge))
  end
  -- Floored: sums changed by hosts older than the sums cannot read below 0.
  return math.max(sum - between(key, stamps, now, '+inf'), 0), sum
end

-- The total booked in (now - w, now].
function rolling.used(key, stamps, w, now)
  if not stamped(stamps) then return scanned(key, now - w, now) end
  return (window(key, stamps, w, now))
end

-- Gives a series written before the stamps existed its stamps, expiring
-- with it, and its longest window as the first one it keeps a sum of (so
-- a shorter window booked first cannot drop what the longer one reads).
local function migrate(key, stamps)
  if stamped(stamps) then return end
  local times = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if tonumber(field) then times[#times + 1] = field end
  end
  for i = 1, #times, CHUNK do
    local args = {}
    for j = i, math.min(i + CHUNK - 1, #times) do
      args[#args + 1] = times[j]
      args[#args + 1] = times[j]
    end
    redis.call('ZADD', stamps, unpack(args))
  end
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then redis.call('PEXPIRE', stamps, ttl) end
  local longest = redis.call('HGET', key, 'window_ms')
  if longest and tonumber(longest) > 0 and not redis.call('HGET', key, 'windows') then
    redis.call('HSET', key, 'windows', longest)
  end
end

-- Books amount at now for a window of w ms: moves every window's sum to
-- now, counts the booking in each, and drops bookings no window reaches.
function rolling.book(key, stamps, w, now, amount)
  migrate(key, stamps)
  local windows = windows_of(key)
  local known = false
  for _, length in ipairs(windows) do known = known or length == w end
  if not known then
    windows[#windows + 1] = w
    local names = {}
    for i, length in ipairs(windows) do names[i] = num(length) end
    redis.call('HSET', key, 'windows', table.concat(names, ','))
  end
  local longest = 0
  for _, length in ipairs(windows) do
    local _, sum = window(key, stamps, length, now)
    redis.call('HSET', key, 'sum:' .. num(length), num(sum + amount), 'edge:' .. num(length), num(now - length))
    longest = math.max(longest, length)
  end
  add(key, num(now), amount)
  redis.call('ZADD', stamps, num(now), num(now))
  -- Every edge is at now - its length, so these are in no sum.
  drop_through(key, stamps, now - longest)
  redis.call('HSET', key, 'window_ms', num(longest))
  redis.call('PEXPIRE', key, longest + 60000)
  redis.call('PEXPIRE', stamps, longest + 60000)
end

-- Adds delta to the booking at `at`, floored at zero, and to every sum
-- that counts it. A booking no longer kept is not brought back.
function rolling.adjust(key, stamps, at, delta)
  migrate(key, stamps)
  if redis.call('HEXISTS', key, num(at)) == 0 then return end
  local old, new = add(key, num(at), delta)
  for _, length in ipairs(windows_of(key)) do
    local kept = redis.call('HMGET', key, 'sum:' .. num(length), 'edge:' .. num(length))
    local sum, edge = tonumber(kept[1]), tonumber(kept[2])
    if sum and edge and at > edge then
      redis.call('HSET', key, 'sum:' .. num(length), num(sum + new - old))
    end
  end
end
