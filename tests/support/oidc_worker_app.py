"""An app behind oidc-provider for ``uvicorn --workers N`` sharing Redis (test_oidc_workers).

Configured from the environment: ``AUTHKIT_OIDC_ISSUER``, ``AUTHKIT_OIDC_CLIENT_ID``,
``AUTHKIT_OIDC_CLIENT_SECRET``, ``AUTHKIT_SECRET`` and ``AUTHKIT_REDIS_URL``; with
``AUTHKIT_OIDC_AUDIENCE`` the provider's tokens are the session, with
``AUTHKIT_ISSUER_ACCESS_TTL`` instead it is social sign-in into the built-in issuer's
sessions (kept in the same Redis). Plain http on loopback, so the cookies are not Secure.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request

from fastapi_authkit import AuthKitMiddleware, create_issuer, create_store
from fastapi_authkit.config import AuthStore
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.oidc import AppUser, OIDCClient, ProviderIdentity
from fastapi_authkit.stores import RedisStore

env = os.environ
redis = RedisStore.from_url(env["AUTHKIT_REDIS_URL"])
app = FastAPI()


def provider_session() -> tuple[OIDCClient, AuthStore]:
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
        shared_store=redis,
        cookie_secure=False,
    )
    return oidc, store


def social() -> tuple[OIDCClient, AuthStore]:
    issuer = create_issuer(
        backend=redis,
        signing_key=env["AUTHKIT_SECRET"] + "-issuer",
        access_ttl=float(env["AUTHKIT_ISSUER_ACCESS_TTL"]),
    )

    def on_identity(identity: ProviderIdentity) -> AppUser:
        return AppUser(identity.subject, user_state={"email": identity.claims.get("email")})

    oidc = OIDCClient(
        issuer=env["AUTHKIT_OIDC_ISSUER"],
        client_id=env["AUTHKIT_OIDC_CLIENT_ID"],
        client_secret=env["AUTHKIT_OIDC_CLIENT_SECRET"],
        scope="openid profile email",
        redirect_uri="https://app.test/auth/callback",
        session=issuer,
        on_identity=on_identity,
    )
    store = create_store(secret_key=env["AUTHKIT_SECRET"], token_issuer=issuer, cookie_secure=False)

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        await issuer.sign_out(request)
        return {"ok": True}

    return oidc, store


oidc, store = social() if "AUTHKIT_ISSUER_ACCESS_TTL" in env else provider_session()
app.add_middleware(AuthKitMiddleware, store=store)
app.include_router(oidc.router())


@app.middleware("http")
async def worker_header(request: Request, call_next: Any) -> Any:
    # Which worker answered, for tests that must know where each request landed.
    response = await call_next(request)
    response.headers["x-worker"] = str(os.getpid())
    return response


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.get("/api/me")
async def me(user: CurrentUser) -> dict[str, Any]:
    return {"user": user, "worker": os.getpid()}
