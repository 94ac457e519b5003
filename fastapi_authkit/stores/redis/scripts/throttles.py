"""The scripts of the login guard's attempt counters: take an attempt, give one back."""

from __future__ import annotations

from typing import Final

__all__ = ["GIVE", "TAKE"]


# KEYS: a login-guard counter. ARGV: now, limit, base delay, max delay, forget after (s),
# backstop (ms). Refused while locked (nothing counted); else one more attempt, and the one
# reaching the limit, or let in after a lock ran out, locks for base * 2^(n - limit), at
# most max. 'x' is when the counter is forgotten, by the caller's clock (the key's own
# expiry is the backstop behind it). Answers {allowed, count, locked until, locked now};
# times as strings (a Lua number in a reply is cut to an integer).
TAKE: Final = """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local r = redis.call('HMGET', KEYS[1], 'n', 'u', 'x')
local n = tonumber(r[1]) or 0
local u = tonumber(r[2]) or 0
if (tonumber(r[3]) or 0) <= now then n, u = 0, 0 end
if u > now then return {0, n, tostring(u), 0} end
n = n + 1
local locked = 0
u = 0
if n >= limit then
  u = now + math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ math.min(n - limit, 64))
  locked = 1
end
local x = math.max(u, now) + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'n', n, 'u', tostring(u), 'l', limit, 'x', tostring(x))
redis.call('PEXPIRE', KEYS[1], math.ceil((x - now) * 1000) + tonumber(ARGV[6]))
return {1, n, tostring(u), locked}
"""

# KEYS: a login-guard counter. ARGV: '1' to drop it, else one attempt fewer (and no lock
# below the limit); now. HSET keeps the key's expiry.
GIVE: Final = """
local r = redis.call('HMGET', KEYS[1], 'n', 'l', 'x')
local n = tonumber(r[1])
if ARGV[1] == '1' or (n and (tonumber(r[3]) or 0) <= tonumber(ARGV[2])) then
  redis.call('DEL', KEYS[1])
  return 1
end
if not n then return 0 end
n = math.max(n - 1, 0)
if n < (tonumber(r[2]) or 0) then
  redis.call('HSET', KEYS[1], 'n', n, 'u', '0')
else
  redis.call('HSET', KEYS[1], 'n', n)
end
return 1
"""
