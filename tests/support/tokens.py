"""The tests' keys, and access JWTs minted with them."""

from __future__ import annotations

from typing import Any

import jwt

from tests.support.clock import Clock

TOKEN_KEY = "test-token-key-0123456789abcdef0123456789"
SECRET_KEY = "test-secret-key-0123456789abcdef012345678"


def make_token(
    clock: Clock | float,
    *,
    ttl: float = 300,
    sub: str = "alice",
    key: str | bytes = TOKEN_KEY,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """An access JWT issued at the clock's now, valid for ``ttl`` seconds."""
    now = clock() if callable(clock) else clock
    payload: dict[str, Any] = {"sub": sub, "iat": int(now), "exp": int(now + ttl), **claims}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)
