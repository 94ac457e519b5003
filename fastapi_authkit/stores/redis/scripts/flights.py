"""The scripts of the cross-process refresh flight: claim, finish, release, drop."""

from __future__ import annotations

from typing import Final

__all__ = ["CLAIM", "DROP", "FINISH", "RELEASE"]

# KEYS: the flight. ARGV: owner, now, lease (s), backstop (ms). Answers nothing when this
# owner claimed it, else what holds it: 'P:<owner>' (pending) or the published result.
CLAIM: Final = """
local x = redis.call('HGET', KEYS[1], 'x')
if x and tonumber(x) > tonumber(ARGV[2]) then return redis.call('HGET', KEYS[1], 'v') end
redis.call('DEL', KEYS[1])
local expires = tostring(tonumber(ARGV[2]) + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'v', 'P:' .. ARGV[1], 'x', expires)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return false
"""
# KEYS: the flight. ARGV: owner, result, kept until, backstop (ms). Only the owner's claim
# turns into its result: a claim that ran out and was taken over is someone else's now.
FINISH: Final = """
if redis.call('HGET', KEYS[1], 'v') ~= 'P:' .. ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'x', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
# KEYS: the flight. ARGV: owner. A refresh that failed gives its claim up, if still its own.
RELEASE: Final = """
if redis.call('HGET', KEYS[1], 'v') == 'P:' .. ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# A published result only: a claim still pending belongs to a refresh in progress.
DROP: Final = """
local v = redis.call('HGET', KEYS[1], 'v')
if v and string.sub(v, 1, 2) ~= 'P:' then redis.call('DEL', KEYS[1]) end
return 1
"""
