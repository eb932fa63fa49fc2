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
--   charges  [{key, scope, amount, limit, window_ms?, stamps?}]  budget
--            bookings: checked together (charges on one key add up),
--            booked only if every one stays within its limit; window_ms
--            and stamps mark a rolling series (rolling.lua)
--   adds     [{key, field, delta}]  counter changes, floored at zero
--   rolling_adds [{key, stamps, at, delta}]  changes to a rolling series'
--            booking at `at`, floored at zero (rolling.lua)
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

local pending = {}
for _, charge in ipairs(plan.charges) do
  local used
  if charge.window_ms then
    used = rolling.used(charge.key, charge.stamps, charge.window_ms, now)
  else
    used = tonumber(redis.call('HGET', charge.key, 'used') or '0')
  end
  used = used + (pending[charge.key] or 0)
  if used + charge.amount > charge.limit then
    return {'budget', charge.scope, num(used), num(charge.amount), num(charge.limit)}
  end
  pending[charge.key] = (pending[charge.key] or 0) + charge.amount
end

-- Dropping expired members changes nothing a cap counts, so it may happen
-- even when a later cap refuses.
for i, cap in ipairs(plan.caps) do
  redis.call('ZREMRANGEBYSCORE', cap.key, '-inf', num(now))
  if redis.call('ZCARD', cap.key) >= cap.max then
    return {'full', tostring(i - 1)}
  end
end

for _, charge in ipairs(plan.charges) do
  if charge.window_ms then
    rolling.book(charge.key, charge.stamps, charge.window_ms, now, charge.amount)
  else
    add(charge.key, 'used', charge.amount)
    redis.call('HSET', charge.key, 'limit', num(charge.limit))
    redis.call('PEXPIRE', charge.key, plan.total_ttl_ms)
  end
end

for _, change in ipairs(plan.adds) do
  add(change.key, change.field, change.delta)
end

for _, change in ipairs(plan.rolling_adds) do
  rolling.adjust(change.key, change.stamps, change.at, change.delta)
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
    redis.call('ZREMRANGEBYSCORE', index.key, '-inf', '(' .. num(index.drop_below))
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
