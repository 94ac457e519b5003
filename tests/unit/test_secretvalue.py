"""Secrets given wrapped (pydantic's SecretStr/SecretBytes, Starlette's Secret) are
accepted wherever the kit takes a secret, and importing the kit never imports pydantic."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from pydantic import SecretBytes, SecretStr
from starlette.datastructures import Secret

import fastapi_authkit
from fastapi_authkit import AuthKitMiddleware, create_issuer, create_store
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.errors import ConfigurationError
from fastapi_authkit.oidc import refresh_token_grant
from fastapi_authkit.stores import MemoryStore

from tests.support.apps import client
from tests.support.clock import Clock
from tests.support.tokens import SECRET_KEY, TOKEN_KEY, make_token

ROOT = Path(fastapi_authkit.__file__).resolve().parent
SIGNING_KEY = "issuer-signing-key-0123456789abcdef-0123"


def test_no_module_of_the_kit_imports_pydantic() -> None:
    """Duck-typed (``get_secret_value``): the middleware also runs under plain Starlette,
    where pydantic may be absent (FastAPI itself brings it, the kit never asks for it)."""
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] == "pydantic" for n in names), path


@pytest.mark.parametrize("wrap", [SecretStr, lambda s: SecretBytes(s.encode()), Secret])
def test_create_store_takes_wrapped_secret_and_token_keys(clock: Clock, wrap: object) -> None:
    store = create_store(
        secret_key=wrap(SECRET_KEY),  # type: ignore[operator]
        token_key=wrap(TOKEN_KEY),  # type: ignore[operator]
        algorithms=["HS256"],
        clock=clock,
        leeway=0,
    )
    assert store.verifier.verify(make_token(clock), clock())["sub"] == "alice"
    assert store.secret_keys == (SECRET_KEY.encode(),)
    # A list of keys, and a key-id mapping, with wrapped members.
    create_store(secret_key=[SecretStr(SECRET_KEY)], token_key={"k1": SecretStr(TOKEN_KEY)})


def test_wrapped_secrets_are_still_checked() -> None:
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        create_store(secret_key=SecretStr("short"), token_key=TOKEN_KEY)


def test_create_issuer_takes_a_wrapped_signing_key(clock: Clock) -> None:
    issuer = create_issuer(
        backend=MemoryStore(),
        signing_key=SecretStr(SIGNING_KEY),
        key_id="k2",
        previous_keys={"k1": SecretStr("issuer-old-signing-key-0123456789abcdef-01")},
        clock=clock,
    )
    app = FastAPI()
    store = create_store(secret_key=SecretStr(SECRET_KEY), token_issuer=issuer, clock=clock)
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.post("/login")
    async def login(request: Request) -> None:
        await issuer.sign_in(request, "alice", user_state={"name": "Alice"})

    @app.get("/me")
    async def me(user: CurrentUser) -> object:
        return user

    with client(app) as tc:
        assert tc.post("/login").status_code == 200
        assert tc.get("/me").json() == {"name": "Alice"}


def test_oidc_client_secret_may_be_a_secret_str() -> None:
    grant = refresh_token_grant(
        "https://idp.example/token", client_id="app", client_secret=SecretStr("s3cret")
    )
    assert grant._endpoint._client_secret == "s3cret"  # type: ignore[attr-defined]
    assert "s3cret" not in repr(grant)
