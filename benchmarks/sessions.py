"""Signed-in sessions for benchmarks: access tokens minted fast, the cookies sign_in sets,
and a refresh callback that must never run."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import HTTPConnection

from benchmarks.cookies import parse_set_cookies
from fastapi_authkit import AuthState, sign_in
from fastapi_authkit.config import AuthStore
from fastapi_authkit.state import SCOPE_KEY


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


_HS256_HEADER = _b64(b'{"alg":"HS256","typ":"JWT"}')


def mint_hs256(claims: Mapping[str, Any], key: bytes) -> str:
    """An HS256 JWT exactly as PyJWT writes it, ~10x faster: 100,000 tokens take about a
    second instead of several. Only benchmarks mint this way; the kit verifies with PyJWT."""
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = _HS256_HEADER + b"." + payload
    signature = _b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


def session_cookies(
    store: AuthStore,
    token: str,
    *,
    refresh: str | None = None,
    user_state: Any = None,
) -> dict[str, str]:
    """The cookies a browser holds after ``sign_in``, produced by the kit's own public
    ``sign_in`` on a bare connection (no app or route needed)."""
    state = AuthState(store)
    sign_in(
        HTTPConnection({"type": "http", SCOPE_KEY: state}),
        auth={"token": token, "type": "Bearer"},
        refresh=refresh,
        user_state=user_state,
    )
    return parse_set_cookies(state.pending_cookies())


class UnexpectedRefresh:
    """The refresh callback of a steady-state run: it must never be called. It counts, so
    the benchmark can check afterwards (a callback that raised would go unnoticed: the old
    token is still valid, so the request still succeeds)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, param: object) -> object:
        self.calls += 1
        raise RuntimeError("a steady-state benchmark request refreshed")

    def check(self, what: str) -> None:
        if self.calls:
            raise RuntimeError(f"{what}: {self.calls} refreshes in a steady-state run")
