"""The script that revokes a session family and publishes its revocation."""

from __future__ import annotations

from typing import Final

__all__ = ["REVOKE"]


# KEYS: family[, token: only if this refresh token exists]. ARGV: confirm, family id, the
# revocation channel. 1 revoked now, 0 already, -1 no such family, -2 no such token (its
# family exists: the token may be forged to name someone else's family, so nothing is
# done). ARGV[1] = '1': an earlier revocation is written again, so that the WAIT behind it
# covers it. A family the store does not hold (flushed, swapped, evicted, expired) is not
# live here, but a process's view may have learned it live before it vanished: its
# revocation is published all the same.
REVOKE: Final = """
local rev = redis.call('HGET', KEYS[1], 'rev')
if not rev then
  redis.call('PUBLISH', ARGV[3], ARGV[2])
  return -1
end
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 0 then return -2 end
if rev == '0' then
  redis.call('HSET', KEYS[1], 'rev', '1')
  redis.call('PUBLISH', ARGV[3], ARGV[2])
  return 1
end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'rev', '1') end
return 0
"""
