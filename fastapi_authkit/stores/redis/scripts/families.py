"""The scripts of a session family's life: creation, rotation (and its undoing), refreshes."""

from __future__ import annotations

from typing import Final

__all__ = ["ADD_TO_SUBJECT", "CREATE", "RECORD_REFRESH", "ROTATE", "UNROTATE"]


# KEYS: family, token. A new family and its first refresh token.
CREATE: Final = """
local now = tonumber(ARGV[3])
local abs = now + tonumber(ARGV[5])
local exp = math.min(now + tonumber(ARGV[4]), abs)
redis.call('HSET', KEYS[1], 'sub', ARGV[2], 'abs', tostring(abs), 'cur', ARGV[1], 'rev', '0')
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[5]) * 1000) + tonumber(ARGV[6]))
redis.call('HSET', KEYS[2], 'fam', ARGV[7], 'exp', tostring(exp))
redis.call('PEXPIRE', KEYS[2], math.ceil((exp - now) * 1000) + tonumber(ARGV[6]))
return 1
"""

# KEYS: subject. Remembers a family for "sign out everywhere" as long as it may live.
ADD_TO_SUBJECT: Final = """
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS: token, family[, successor]. ARGV[7] = '1' (replicas are waited for): a replay also
# writes, so that the WAIT behind it covers the rotation it repeats. ARGV[8]: the revocation
# channel; ARGV[9]: whom the offered successor was minted for ('' when not said); ARGV[10]:
# the token's id; ARGV[11]: the late-replay window. The live outcomes answer with the
# family's absolute expiry, for the processes' views. The immediate predecessor of an unused
# successor replays it within the grace window, and once later up to the late-replay window
# (its holder may never have received it: a reply lost, a client gone), the family's 'dup'
# naming the successor so handed out twice, which cannot replay late itself. Both windows
# count from the rotation ('rat'); after them a rotated-out token is reuse.
ROTATE: Final = """
local now = tonumber(ARGV[1])
local grace, idle, backstop = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[6])
local window = tonumber(ARGV[11])
local r = redis.call('HMGET', KEYS[1], 'fam', 'exp', 'rat', 'succ', 'sealed')
if not r[1] or tonumber(r[2]) <= now then return {'unknown'} end
local f = redis.call('HMGET', KEYS[2], 'sub', 'abs', 'cur', 'rev', 'dup')
if not f[1] then return {'unknown'} end
if f[4] == '1' then return {'revoked', r[1], f[1]} end
if now >= tonumber(f[2]) then
  redis.call('HSET', KEYS[2], 'rev', '1')
  redis.call('PUBLISH', ARGV[8], r[1])
  return {'expired', r[1], f[1]}
end
if not r[3] then
  if ARGV[4] == '' or (ARGV[9] ~= '' and ARGV[9] ~= f[1]) then
    return {'active', r[1], f[1], '', f[2]}
  end
  local keep = math.max(tonumber(r[2]), now + grace, now + window)
  redis.call('HSET', KEYS[1], 'rat', ARGV[1], 'succ', ARGV[4], 'sealed', ARGV[5],
             'exp', tostring(keep))
  redis.call('PEXPIRE', KEYS[1], math.ceil((keep - now) * 1000) + backstop)
  local newexp = math.min(now + idle, tonumber(f[2]))
  redis.call('HSET', KEYS[3], 'fam', r[1], 'exp', tostring(newexp))
  redis.call('PEXPIRE', KEYS[3], math.ceil((newexp - now) * 1000) + backstop)
  redis.call('HSET', KEYS[2], 'cur', ARGV[4])
  return {'rotated', r[1], f[1], '', f[2]}
end
local age = now - tonumber(r[3])
local late = age > grace
if f[3] == r[4] and (not late or (age <= window and f[5] ~= ARGV[10])) then
  if late then redis.call('HSET', KEYS[2], 'dup', r[4]) end
  if ARGV[7] == '1' then redis.call('HSET', KEYS[1], 'rep', ARGV[1]) end
  return {'replay', r[1], f[1], r[5], f[2]}
end
redis.call('HSET', KEYS[2], 'rev', '1')
redis.call('PUBLISH', ARGV[8], r[1])
return {'reuse', r[1], f[1]}
"""

# KEYS: token, family, successor. Undoes a rotation the replicas did not confirm, unless
# the family has moved on since.
UNROTATE: Final = """
if redis.call('HGET', KEYS[1], 'succ') ~= ARGV[2] then return 0 end
if redis.call('HGET', KEYS[2], 'cur') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'rat', 'succ', 'sealed')
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[2], 'cur', ARGV[1])
return 1
"""

# KEYS: family, session record. ARGV: the offered successor's id, now, user agent, address,
# backstop. Sent right behind ROTATE in the same pipeline (same slot, same connection), so
# recording a refresh costs no round trip and ROTATE stays as it is: it records only if
# that rotation made the offered successor current, so a replay, a refused or a forged
# refresh (a junk token naming someone's family) writes nothing.
RECORD_REFRESH: Final = """
local f = redis.call('HMGET', KEYS[1], 'cur', 'rev', 'abs')
if f[1] ~= ARGV[1] or f[2] ~= '0' then return 0 end
redis.call('HSET', KEYS[2], 't', ARGV[2], 'ua', ARGV[3], 'ip', ARGV[4])
local ttl = math.ceil((tonumber(f[3]) - tonumber(ARGV[2])) * 1000)
redis.call('PEXPIRE', KEYS[2], math.max(ttl, 1) + tonumber(ARGV[5]))
return 1
"""
