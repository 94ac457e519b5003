"""A login route behind the login guard on Redis, for ``uvicorn --workers 2``
(tests/integration/one_process/test_loginguard.py). Environment: ``AUTHKIT_REDIS_URL``,
``GUARD_PREFIX`` (the store's key prefix), ``GUARD_TRUSTED`` (comma-separated trusted
proxies, may be empty). Every answer names the worker (its pid) in ``X-Worker``."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse

from fastapi_authkit import create_login_guard
from fastapi_authkit.errors import LoginThrottled
from fastapi_authkit.stores import RedisStore

SALT = b"guard-app-salt"


def _hash(password: str) -> bytes:
    return hashlib.scrypt(password.encode(), salt=SALT, n=2**12, r=8, p=1)


USERS = {"alice": _hash("right password")}
DUMMY = _hash("no such user")
WORKER = {"X-Worker": str(os.getpid())}

store = RedisStore.from_url(
    os.environ["AUTHKIT_REDIS_URL"], prefix=os.environ.get("GUARD_PREFIX", "guard:")
)
trusted = [p for p in os.environ.get("GUARD_TRUSTED", "").split(",") if p]
guard = create_login_guard(
    backend=store, max_failures=5, base_delay=2.0, max_delay=4.0, trusted_proxies=trusted
)
app = FastAPI()


@app.get("/ready")
async def ready() -> JSONResponse:
    return JSONResponse({"ok": True}, headers=WORKER)


@app.post("/login")
async def login(
    request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()]
) -> JSONResponse:
    try:
        async with guard.attempt(request, account=username) as attempt:
            stored = USERS.get(username, DUMMY)
            if username not in USERS or not hmac.compare_digest(_hash(password), stored):
                attempt.failed()
                return JSONResponse({"ok": False}, status_code=401, headers=WORKER)
            attempt.succeeded()
    except LoginThrottled as exc:
        return JSONResponse(
            {"detail": exc.detail},
            status_code=exc.status_code,
            headers={**(exc.headers or {}), **WORKER},
        )
    return JSONResponse({"ok": True}, headers=WORKER)
