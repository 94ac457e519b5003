"""An app behind oidc-provider for ``uvicorn --workers N`` sharing Redis (test_oidc_workers).

Configured from the environment: ``AUTHKIT_OIDC_ISSUER``, ``AUTHKIT_OIDC_CLIENT_ID``,
``AUTHKIT_OIDC_CLIENT_SECRET``, ``AUTHKIT_OIDC_AUDIENCE``, ``AUTHKIT_SECRET`` and
``AUTHKIT_REDIS_URL``. Plain http on loopback, so the cookies are not Secure.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

from fastapi_authkit import AuthKitMiddleware, create_store
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.oidc import OIDCClient
from fastapi_authkit.stores import RedisStore

env = os.environ
oidc = OIDCClient(
    issuer=env["AUTHKIT_OIDC_ISSUER"],
    client_id=env["AUTHKIT_OIDC_CLIENT_ID"],
    client_secret=env["AUTHKIT_OIDC_CLIENT_SECRET"],
    audience=env["AUTHKIT_OIDC_AUDIENCE"],
    resource=env["AUTHKIT_OIDC_AUDIENCE"],
    scope="openid profile email api",
    token_typ="at+jwt",
    redirect_uri="https://app.test/auth/callback",
)
store = create_store(
    secret_key=env["AUTHKIT_SECRET"],
    **oidc.store_options(interval=0),
    leeway=0,  # the test waits for real expiry: no leeway to wait out on top
    shared_store=RedisStore.from_url(env["AUTHKIT_REDIS_URL"]),
    cookie_secure=False,
)
app = FastAPI()
app.add_middleware(AuthKitMiddleware, store=store)
app.include_router(oidc.router())


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.get("/api/me")
async def me(user: CurrentUser) -> dict[str, Any]:
    return {"user": user, "worker": os.getpid()}
