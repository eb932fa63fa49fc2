-- Applies one state change planned by the host, all or nothing
-- (docs/decisions/0008-redis-state.md).
--
-- KEYS: every key the plan touches, declared for Redis Cluster routing;
--       they share one hash tag, so one slot.
-- ARGV[1]: the plan, JSON:
--   now      event time (ms) of the change
--   swaps    [{key, expect?, value, ttl_ms}]  records the host read and
--            rewrote (breakers, escalations, reservations): if any differs
--            from what the host read, nothing is applied ("conflict") and
--            the host reads again
--   checks   [{key, expect?}]  records the host read and relies on without
--            changing them (a closed breaker admitting a call): compared
--            like swaps, never written, so a hot breaker is not rewritten
--            by every call that passes it
--   charges  [{key, scope, amount, limit, window_ms?}]  budget bookings:
--            checked together (charges on one key add up), booked only if
--            every one stays within its limit; window_ms marks a rolling
--            series (a hash of booking time -> amount)
--   adds     [{key, field, delta}]  counter changes, floored at zero
--   sets     [{key, value, ttl_ms}]  records written unconditionally
--   pushes   [{key, value, max, ttl_ms}]  bounded lists (run history)
--   indexes  [{key, member, score, drop_below?}]  sorted sets that list
--            keys; members scored below drop_below are dropped
--   caps     [{key, member, score, max, ttl_ms}]  sorted sets scored by
--            expiry (pending escalations): members scored at or below now
--            are dropped, then the member is added only if fewer than max
--            remain; nothing is applied otherwise ("full"); the set is kept
--            at least ttl_ms
--   unindexes [{key, member}]  members removed from sorted sets
-- Returns {"ok"}, {"conflict"}, {"budget", scope, used, amount, limit} or
-- {"full", index of the cap (from 0)}.

local plan = cjson.decode(ARGV[1])
local now = plan.now

for _, list in ipairs({plan.swaps, plan.checks}) do
  for _, record in ipairs(list) do
    if redis.call('GET', record.key) ~= (record.expect or false) then
      return {'conflict'}
    end
  end
end

local function rolling_used(key, window_ms)
  local used = 0
  local entries = redis.call('HGETALL', key)
  for i = 1, #entries, 2 do
    local at = tonumber(entries[i])
    if at and at > now - window_ms and at <= now then
      used = used + tonumber(entries[i + 1])
    end
  end
  return used
end

local pending = {}
for _, charge in ipairs(plan.charges) do
  local used
  if charge.window_ms then
    used = rolling_used(charge.key, charge.window_ms)
  else
    used = tonumber(redis.call('HGET', charge.key, 'used') or '0')
  end
  used = used + (pending[charge.key] or 0)
  if used + charge.amount > charge.limit then
    local n = function(x) return string.format('%.0f', x) end
    return {'budget', charge.scope, n(used), n(charge.amount), n(charge.limit)}
  end
  pending[charge.key] = (pending[charge.key] or 0) + charge.amount
end

-- Dropping expired members changes nothing a cap counts, so it may happen
-- even when a later cap refuses.
for i, cap in ipairs(plan.caps) do
  redis.call('ZREMRANGEBYSCORE', cap.key, '-inf', string.format('%.0f', now))
  if redis.call('ZCARD', cap.key) >= cap.max then
    return {'full', tostring(i - 1)}
  end
end

local function add(key, field, delta)
  local value = tonumber(redis.call('HGET', key, field) or '0') + delta
  if value < 0 then value = 0 end
  redis.call('HSET', key, field, string.format('%.0f', value))
end

for _, charge in ipairs(plan.charges) do
  if charge.window_ms then
    add(charge.key, tostring(now), charge.amount)
    -- Bookings older than the longest window asked of the series go.
    local longest = math.max(tonumber(redis.call('HGET', charge.key, 'window_ms') or '0'), charge.window_ms)
    redis.call('HSET', charge.key, 'window_ms', longest)
    local fields = redis.call('HKEYS', charge.key)
    for _, field in ipairs(fields) do
      local at = tonumber(field)
      if at and at <= now - longest then redis.call('HDEL', charge.key, field) end
    end
    redis.call('PEXPIRE', charge.key, longest + 60000)
  else
    add(charge.key, 'used', charge.amount)
    redis.call('HSET', charge.key, 'limit', string.format('%.0f', charge.limit))
    redis.call('PEXPIRE', charge.key, plan.total_ttl_ms)
  end
end

for _, change in ipairs(plan.adds) do
  add(change.key, change.field, change.delta)
end

for _, swap in ipairs(plan.swaps) do
  redis.call('SET', swap.key, swap.value, 'PX', swap.ttl_ms)
end

for _, set in ipairs(plan.sets) do
  redis.call('SET', set.key, set.value, 'PX', set.ttl_ms)
end

for _, push in ipairs(plan.pushes) do
  redis.call('RPUSH', push.key, push.value)
  redis.call('LTRIM', push.key, -push.max, -1)
  redis.call('PEXPIRE', push.key, push.ttl_ms)
end

for _, index in ipairs(plan.indexes) do
  redis.call('ZADD', index.key, index.score, index.member)
  if index.drop_below then
    redis.call('ZREMRANGEBYSCORE', index.key, '-inf', '(' .. string.format('%.0f', index.drop_below))
  end
end

for _, cap in ipairs(plan.caps) do
  redis.call('ZADD', cap.key, cap.score, cap.member)
  if redis.call('PTTL', cap.key) < cap.ttl_ms then
    redis.call('PEXPIRE', cap.key, cap.ttl_ms)
  end
end

for _, entry in ipairs(plan.unindexes) do
  redis.call('ZREM', entry.key, entry.member)
end

return {'ok'}
