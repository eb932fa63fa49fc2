-- Reads a rolling window's total, after the rolling.lua prelude; writes
-- nothing.
--
-- KEYS[1]: the series' hash; KEYS[2]: its stamps
-- ARGV[1]: the window's length (ms); ARGV[2]: now (ms)
-- Returns the total booked in (now - length, now], as a decimal string.

return num(rolling.used(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2])))
