"""Shared tools of the security suite: the "never a 500" guard, raw ASGI drivers, hand-forged
tokens, and the app every catalogue case runs against.

Every response any test of this suite looks at goes through :func:`assert_no_500`: the
:class:`SafeClient` checks each TestClient response, :func:`asgi_http` each raw one, and
exceptions escaping the app are never swallowed (TestClient re-raises them, the raw drivers
do not catch them), so "no 500" holds for every case without being repeated in each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import FastAPI, Request, WebSocket
from starlette.testclient import TestClient

from fastapi_authkit.config import AuthStore
from fastapi_authkit.dependencies import AuthStateDep, CurrentUser

from tests.support.apps import build_app
from tests.support.clock import T0
from tests.support.tokens import TOKEN_KEY

Json = dict[str, Any]
Headers = Sequence[tuple[bytes, bytes]]

AUTH_COOKIES = ("_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
OTHER_KEY = "another-token-key-0123456789abcdef01234567"
LONG_KEY = TOKEN_KEY * 2  # 82 bytes: long enough for HS384/HS512 as well
EXP = int(T0) + 300


# --- no 500, ever -------------------------------------------------------------------------------


def assert_no_500(status: int | Any) -> None:
    """Fail on a server error, whatever shape the response has."""
    code = status if isinstance(status, int) else status.status_code
    assert code != 500, f"server error: {status!r}"
    assert code < 500 or code == 503, f"unexpected server error status {code}"


class SafeClient(TestClient):
    """A TestClient that asserts "no 500" on every response it returns (every helper method
    of TestClient goes through ``request``)."""

    def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        response = super().request(*args, **kwargs)
        assert_no_500(response)
        return response


def safe_client(app: FastAPI) -> SafeClient:
    # https so the cookie jar sends the Secure cookies back, as a browser would.
    return SafeClient(app, base_url="https://testserver")


def set_cookies(response: Any) -> dict[str, str]:
    """Set-Cookie headers of a TestClient response by cookie name (whole header value)."""
    return {v.split("=", 1)[0]: v for v in response.headers.get_list("set-cookie")}


def cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in jar.items())


def jar_without(jar: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in jar.items() if k not in names}


def state_for(app: FastAPI, access: str | None, refresh: str | None = None) -> bytes:
    """``_auth_state=<value>``: the state cookie a session of these tokens carries (an
    identity needs it beside the access cookie), for a Cookie header a test writes by hand,
    so that what the test sends is rejected for the reason it names and for no other."""
    store = app.user_middleware[0].kwargs["store"]
    bound_to = refresh if refresh is not None else access
    assert bound_to is not None
    value = store.state_codec.dumps("sid-0", None, bound_to, (access,))
    return b"_auth_state=" + value.encode()


# --- raw ASGI -----------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the app sent for one raw ASGI HTTP request."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    messages: list[Json] = field(repr=False)

    def header_values(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name]

    def json(self) -> Any:
        return json.loads(self.body)

    def set_cookies(self) -> dict[str, str]:
        """Set-Cookie values by cookie name (whole header value, decoded)."""
        return {
            v.decode("latin-1").split("=", 1)[0]: v.decode("latin-1")
            for v in self.header_values(b"set-cookie")
        }


def http_scope(
    method: str = "GET",
    path: str = "/",
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    scheme: str = "https",
    host: bytes | None = b"testserver",
    root_path: str = "",
) -> Json:
    all_headers = [(b"host", host)] if host is not None else []
    all_headers.extend(headers)
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode("latin-1"),
        "root_path": root_path,
        "query_string": b"",
        "headers": all_headers,
        "client": ("203.0.113.7", 50000),
        "server": ("testserver", 443 if scheme == "https" else 80),
        "state": {},
    }


async def asgi_http(
    app: Any,
    method: str = "GET",
    path: str = "/",
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    body: bytes = b"",
    scheme: str = "https",
    host: bytes | None = b"testserver",
    root_path: str = "",
) -> Reply:
    """One HTTP request as raw ASGI messages; exceptions escaping the app propagate.
    ``path`` is the full path, which includes ``root_path`` (as servers send it)."""
    scope = http_scope(method, path, headers, scheme=scheme, host=host, root_path=root_path)
    messages: list[Json] = []
    request_sent = False

    async def receive() -> Json:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Json) -> None:
        messages.append(message)

    await app(scope, receive, send)
    starts = [m for m in messages if m["type"] == "http.response.start"]
    assert len(starts) == 1, messages
    payload = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    reply = Reply(starts[0]["status"], list(starts[0].get("headers", [])), payload, messages)
    assert_no_500(reply.status)
    return reply


def call(app: Any, method: str = "GET", path: str = "/", headers: Headers = (), **kw: Any) -> Reply:
    """:func:`asgi_http` from synchronous code (a fresh event loop per call)."""

    async def run() -> Reply:
        return await asgi_http(app, method, path, headers, **kw)

    return anyio.run(run)


async def asgi_websocket(
    app: Any, path: str = "/ws", headers: Iterable[tuple[bytes, bytes]] = ()
) -> list[Json]:
    """One WebSocket handshake as raw ASGI messages; returns what the app sent.

    The client connects, then disconnects as soon as the app has answered the handshake.
    """
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "wss",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("203.0.113.7", 50000),
        "server": ("testserver", 443),
        "subprotocols": [],
        "state": {},
    }
    sent: list[Json] = []
    connected = False

    async def receive() -> Json:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Json) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


# --- hand-forged tokens -------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(part: Json | bytes) -> str:
    return b64url(part if isinstance(part, bytes) else json.dumps(part).encode())


def forge(
    header: Json | bytes,
    payload: Json | bytes,
    *,
    key: str | bytes = TOKEN_KEY,
    digest: Callable[..., Any] = hashlib.sha256,
) -> str:
    """A JWS with exactly this header and payload, HMAC-signed by hand (nothing in PyJWT's
    encoder can refuse or normalise it)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    raw_key = key.encode() if isinstance(key, str) else key
    signature = hmac.new(raw_key, signing_input.encode("ascii"), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned(header: Json | bytes, payload: Json | bytes, signature: str = "") -> str:
    return f"{segment(header)}.{segment(payload)}.{signature}"


def flip_char(value: str, index: int = 0) -> str:
    """``value`` with one base64url character changed. Use an index away from the end: the
    last character of unpadded base64 carries unused bits, so changing it can decode to the
    very same bytes (a flaky "tampered" value that still verifies)."""
    old = value[index]
    new = "A" if old not in "Aa" else "Q"  # differ in the high bits, not just the low ones
    return value[:index] + new + value[index + 1 :]


def claims_at(now: float, ttl: float = 300, **extra: Any) -> Json:
    return {"sub": "alice", "iat": int(now), "exp": int(now + ttl), **extra}


# --- the app under test -------------------------------------------------------------------------


def security_app(store: AuthStore) -> FastAPI:
    """tests/support/apps.py's app plus what the catalogue needs: every unsafe method on /write, a
    /whoami that says which token authenticated the request, and WebSocket routes."""
    app = build_app(store)

    @app.api_route("/write", methods=["PUT", "PATCH", "DELETE"])
    async def write_other(user: CurrentUser) -> dict[str, bool]:
        return {"written": True}

    @app.api_route("/whoami", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    async def whoami(request: Request, state: AuthStateDep) -> dict[str, Any]:
        return {
            "auth": state.is_authenticated,
            "token": state.token,
            "sub": state.claims.get("sub") if state.claims else None,
            "unavailable": state.unavailable,
        }

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        await websocket.send_json({"user": user})
        await websocket.close()

    return app
