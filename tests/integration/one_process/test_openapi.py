"""The kit's dependencies in ``/openapi.json``, against a snapshot.

A small app uses every dependency alias; its served schema must declare the
``AuthKitCookie`` security scheme (an API key in the ``_auth`` access cookie), list it on
every operation that depends on the kit, and leave operations without auth dependencies
alone. The expected parts live in
``tests/integration/one_process/snapshots/openapi_security.json``: an intentional change edits
that file (or run with ``UPDATE_SNAPSHOTS=1`` to rewrite it, then review the
diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from starlette.testclient import TestClient

from fastapi_authkit import AuthKitMiddleware, create_store, require_auth
from fastapi_authkit.dependencies import (
    AuthHeader,
    AuthStateDep,
    CurrentUser,
    IsAuthenticated,
    OptionalUser,
    dependencies_for,
)

from tests.support.tokens import SECRET_KEY, TOKEN_KEY

SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi_security.json"
# The same routes for a store reading the cookie session and the bearer header.
BOTH_SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi_security_cookie_and_header.json"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def build_app(**store_options: Any) -> FastAPI:
    store = create_store(secret_key=SECRET_KEY, token_key=TOKEN_KEY, **store_options)
    app = FastAPI(title="openapi snapshot")
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/public-echo")
    async def public_echo(item: dict[str, int]) -> dict[str, int]:
        return item

    @app.get("/me")
    async def me(user: CurrentUser) -> Any:
        return user

    @app.post("/items")
    async def create_item(user: CurrentUser, item: dict[str, int]) -> dict[str, int]:
        return item

    @app.get("/maybe")
    async def maybe(user: OptionalUser) -> Any:
        return user

    @app.get("/dashboard")
    async def dashboard(user: Annotated[Any, Depends(require_auth(fallback_path="/login"))]) -> Any:
        return user

    @app.get("/state")
    async def state(state: AuthStateDep) -> bool:
        return state.is_authenticated

    @app.get("/flags")
    async def flags(signed_in: IsAuthenticated, header: AuthHeader) -> bool:
        return signed_in and header is not None

    @app.get("/guarded", dependencies=[Depends(require_auth())])
    async def guarded() -> bool:
        return True

    return app


def served_openapi(app: FastAPI) -> dict[str, Any]:
    """The schema as a client gets it: over HTTP, through the middleware."""
    with TestClient(app, base_url="https://testserver") as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    schema: dict[str, Any] = response.json()
    return schema


def security_parts(schema: dict[str, Any]) -> dict[str, Any]:
    """The parts of the schema the snapshot pins: the schemes, global security, and each
    operation's ``security`` (None when it has none)."""
    return {
        "securitySchemes": schema.get("components", {}).get("securitySchemes"),
        "globalSecurity": schema.get("security"),
        "operations": {
            f"{method.upper()} {path}": operation.get("security")
            for path, item in sorted(schema["paths"].items())
            for method, operation in item.items()
            if method in HTTP_METHODS
        },
    }


def test_openapi_security_matches_the_snapshot() -> None:
    actual = security_parts(served_openapi(build_app()))
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert actual == expected, (
        f"/openapi.json security changed; if intended, update {SNAPSHOT.name} to:\n"
        + json.dumps(actual, indent=2, sort_keys=True)
    )


def test_snapshot_says_what_the_kit_promises() -> None:
    """Guards the snapshot itself against a careless update."""
    snapshot = json.loads(SNAPSHOT.read_text())
    assert snapshot["securitySchemes"] == {
        "AuthKitCookie": {
            "type": "apiKey",
            "in": "cookie",
            "name": "_auth",
            "description": "Access token cookie set by fastapi-authkit (HttpOnly).",
        }
    }
    assert snapshot["globalSecurity"] is None
    operations = snapshot["operations"]
    public = {"GET /health", "POST /public-echo"}
    assert public <= set(operations)
    for label, security in operations.items():
        if label in public:
            assert security is None, label
        else:
            assert security == [{"AuthKitCookie": []}], label


@pytest.mark.parametrize(
    ("store_options", "expected_scheme"),
    [
        ({"auth_name": "__Host-sid"}, {"type": "apiKey", "in": "cookie", "name": "__Host-sid"}),
        ({"auth_type": "header"}, {"type": "http", "scheme": "bearer"}),
        (
            {"auth_type": "gateway"},
            {
                "type": "apiKey",
                "in": "cookie",
                "name": "_auth",
                "description": "Access token cookie set by the auth gateway.",
            },
        ),
    ],
    ids=["custom-auth-name", "header-mode", "gateway-mode"],
)
def test_security_scheme_follows_the_store_configuration(
    store_options: dict[str, Any], expected_scheme: dict[str, str]
) -> None:
    """dependencies_for(store) documents the credential that store really reads."""
    store = create_store(secret_key=SECRET_KEY, token_key=TOKEN_KEY, **store_options)
    deps = dependencies_for(store)
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.get("/me")
    # Default-value style: the annotations are strings here and deps is a local.
    async def me(user: Any = Depends(deps.current_user)) -> Any:
        return user  # pragma: no cover

    @app.get("/page", dependencies=[Depends(deps.require_auth(fallback_path="/in"))])
    async def page(signed_in: bool = Depends(deps.is_authenticated)) -> bool:
        return signed_in  # pragma: no cover

    schema = served_openapi(app)
    (scheme,) = schema["components"]["securitySchemes"].values()
    assert {key: scheme[key] for key in expected_scheme if key in scheme} == expected_scheme
    (name,) = schema["components"]["securitySchemes"]
    assert schema["paths"]["/me"]["get"]["security"] == [{name: []}]
    assert schema["paths"]["/page"]["get"]["security"] == [{name: []}]


def build_both_app() -> FastAPI:
    """The snapshot app's kinds of route, on ``dependencies_for`` a store with
    ``auth_type=("cookie", "header")``."""
    store = create_store(secret_key=SECRET_KEY, token_key=TOKEN_KEY, auth_type=("cookie", "header"))
    deps = dependencies_for(store)
    app = FastAPI(title="openapi snapshot, cookie and header")
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/me")
    async def me(user: Any = Depends(deps.current_user)) -> Any:
        return user  # pragma: no cover

    @app.get("/maybe")
    async def maybe(user: Any = Depends(deps.auth_user)) -> Any:
        return user  # pragma: no cover

    @app.get("/flags")
    async def flags(
        signed_in: bool = Depends(deps.is_authenticated),
        header: str | None = Depends(deps.auth_header),
    ) -> bool:
        return signed_in and header is not None  # pragma: no cover

    @app.get("/state")
    async def state(state: Any = Depends(deps.auth_state)) -> bool:
        return bool(state.is_authenticated)  # pragma: no cover

    @app.get("/guarded", dependencies=[Depends(deps.require_auth())])
    async def guarded() -> bool:
        return True  # pragma: no cover

    return app


def test_cookie_and_header_security_matches_the_snapshot() -> None:
    """Both schemes, and each protected operation lists them as alternatives (either one
    authenticates), so Swagger UI's Authorize dialog offers both."""
    actual = security_parts(served_openapi(build_both_app()))
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        BOTH_SNAPSHOT.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    expected = json.loads(BOTH_SNAPSHOT.read_text())
    assert actual == expected, (
        f"/openapi.json security changed; if intended, update {BOTH_SNAPSHOT.name} to:\n"
        + json.dumps(actual, indent=2, sort_keys=True)
    )
    schemes = expected["securitySchemes"]
    assert set(schemes) == {"AuthKitCookie", "AuthKitBearer"}
    assert schemes["AuthKitBearer"]["scheme"] == "bearer"
    assert (schemes["AuthKitCookie"]["in"], schemes["AuthKitCookie"]["name"]) == ("cookie", "_auth")
    for label, security in expected["operations"].items():
        if label == "GET /health":
            assert security is None
        else:
            assert security == [{"AuthKitCookie": []}, {"AuthKitBearer": []}], label
