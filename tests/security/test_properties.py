"""Properties over hostile input, through the real ASGI app driven with raw ASGI messages:

* never a 500 (nor an exception escaping the app), whatever the Cookie header bytes, the
  token strings in the access cookie or in a Bearer header, or the header combination;
* never authenticated unless the token that authenticated the request is signed by the
  configured key with the configured algorithm (checked independently with PyJWT), and is
  either the one the request carried or one the refresh callback minted.

Examples per property come from the profile in conftest.py (2,000 in CI). The app runs on one
asyncio event loop for the whole module, which keeps an example well under a millisecond.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from fastapi import FastAPI, Request
from hypothesis import event, given
from hypothesis import strategies as st

from fastapi_authkit import (
    AuthKitMiddleware,
    RefreshParam,
    RefreshResult,
    create_refresh,
    create_store,
)
from fastapi_authkit.dependencies import AuthStateDep, CurrentUser, OptionalUser

from .conftest import PROPERTY_SETTINGS
from .helpers import LONG_KEY, OTHER_KEY, Reply, asgi_http, forge, unsigned
from tests.support.apps import state_cookie
from tests.support.clock import T0, Clock
from tests.support.tokens import SECRET_KEY, TOKEN_KEY, make_token

CLOCK = Clock(T0)  # never moves: valid tokens stay valid for the whole run
GOOD_REFRESH = "refresh-good"
MINTED: set[str] = set()


async def _refresh(param: RefreshParam) -> RefreshResult:
    if param.refresh_token != GOOD_REFRESH:
        return RefreshResult(is_success=False)
    token = make_token(CLOCK, sub="refreshed")
    MINTED.add(token)
    return RefreshResult(is_success=True, new_auth_token=token)


def _app(auth_type: str) -> FastAPI:
    refresh = (
        create_refresh(interval=60, refresh_api_callback=_refresh)
        if auth_type == "cookie"
        else None
    )
    store = create_store(
        secret_key=SECRET_KEY,
        token_key=TOKEN_KEY,
        clock=CLOCK,
        auth_type=auth_type,  # type: ignore[arg-type]
        refresh=refresh,
    )
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.api_route("/whoami", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    async def whoami(request: Request, state: AuthStateDep) -> dict[str, Any]:
        return {"auth": state.is_authenticated, "token": state.token}

    @app.get("/me")
    async def me(user: CurrentUser, state: AuthStateDep) -> dict[str, Any]:
        return {"auth": state.is_authenticated, "token": state.token}

    @app.post("/write")
    async def write(user: OptionalUser, state: AuthStateDep) -> dict[str, Any]:
        return {"auth": state.is_authenticated, "token": state.token}

    return app


COOKIE_APP = _app("cookie")
HEADER_APP = _app("header")

VALID = make_token(CLOCK)
EXPIRED = make_token(CLOCK, ttl=-100)
TOKENS = [
    VALID,
    EXPIRED,
    make_token(CLOCK, key=OTHER_KEY),
    make_token(CLOCK, ttl=10 * 365 * 86400),
    forge(
        {"alg": "HS512"}, {"sub": "x", "exp": int(T0) + 300}, key=LONG_KEY, digest=hashlib.sha512
    ),
    unsigned({"alg": "none"}, {"sub": "x", "exp": int(T0) + 300}),
    unsigned({"alg": "none"}, {"sub": "x", "exp": int(T0) - 300}),
    forge({"alg": "HS256", "crit": ["x"], "x": 1}, {"sub": "x", "exp": int(T0) + 300}),
    forge({"alg": "HS256"}, b'{"sub": "x", "exp": NaN}'),
    forge({"alg": "HS256"}, b"[1, 2]"),
]


def _session_cookies() -> dict[str, str]:
    """A real signed-in jar (state + CSRF) for the structured strategies."""
    store = COOKIE_APP.user_middleware[0].kwargs["store"]
    return {
        # Bound to the valid access token, so a request pairing them has a session.
        "_auth_state": store.state_codec.dumps("sid-1", {"n": 1}, VALID),
        "_auth_csrf": store.csrf.token_for("sid-1"),
    }


SESSION = _session_cookies()
# The state cookie of the session whose refresh cookie is GOOD_REFRESH.
REFRESH_STATE = "_auth_state=" + state_cookie(
    COOKIE_APP.user_middleware[0].kwargs["store"], GOOD_REFRESH, EXPIRED
)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


# --- the oracle -----------------------------------------------------------------------------------


def signed_by_configured_key(token: str) -> bool:
    try:
        header = jwt.get_unverified_header(token)
        jwt.decode(
            token,
            TOKEN_KEY,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except Exception:
        return False
    return header.get("alg") == "HS256"


def check(reply: Reply, carried: bytes) -> None:
    """No 500 (the driver asserts it), and authenticated only by a properly signed token."""
    assert reply.status != 500
    event(f"status {reply.status}")
    if reply.status != 200:
        return
    body = reply.json()
    event(f"authenticated: {bool(body.get('auth'))}")
    if not body.get("auth"):
        assert body.get("token") is None
        return
    token = body["token"]
    assert isinstance(token, str)
    assert signed_by_configured_key(token), (
        f"authenticated by a token the key did not sign: {token!r}"
    )
    assert token.encode() in carried or token in MINTED, "authenticated by a token nobody sent"


def run(runner: asyncio.Runner, app: FastAPI, method: str, path: str, headers: list[Any]) -> Reply:
    return runner.run(asgi_http(app, method, path, headers))


# --- strategies -----------------------------------------------------------------------------------

NAMES = [b"_auth", b"_auth_type", b"_auth_state", b"_auth_refresh", b"_auth_csrf"]


def mutate(token: str, position: int, operation: str, text: str) -> str:
    i = position % (len(token) + 1)
    if operation == "insert":
        return token[:i] + text + token[i:]
    if operation == "replace":
        return token[:i] + text + token[i + len(text) :]
    if operation == "delete":
        return token[:i] + token[i + max(1, len(text)) :]
    if operation == "truncate":
        return token[:i]
    if operation == "swap-segments":
        parts = token.split(".")
        return ".".join(reversed(parts))
    if operation == "double":
        return token + "." + token
    return token


tokens = st.one_of(
    st.sampled_from(TOKENS),
    st.builds(
        mutate,
        st.sampled_from(TOKENS),
        st.integers(min_value=0, max_value=10_000),
        st.sampled_from(["insert", "replace", "delete", "truncate", "swap-segments", "double"]),
        st.text(max_size=8),
    ),
    st.text(max_size=300),
    st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", max_size=400
    ),
)

cookie_values = st.one_of(
    tokens.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [GOOD_REFRESH.encode(), b"refresh-bad", *(v.encode() for v in SESSION.values())]
    ),
    st.binary(max_size=200),
    st.just(b"x" * 5000),
)

cookie_names = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from([b" _auth", b"_auth ", b"_AUTH", b"_auth\t", b"", b"__Host-_auth"]),
    st.binary(max_size=12),
)

separators = st.sampled_from([b"; ", b";", b";;", b" ; ", b",", b"\t;"])


@st.composite
def cookie_headers(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=2000))
    pairs = draw(st.lists(st.tuples(cookie_names, cookie_values), max_size=6))
    chunks = [
        name + draw(st.sampled_from([b"=", b"=", b"", b'="'])) + value for name, value in pairs
    ]
    return draw(separators).join(chunks)


# A field-value as servers pass it on (no CR, LF or NUL), and anything at all.
header_values = st.one_of(
    st.binary(max_size=300).filter(lambda v: not any(c in v for c in b"\r\n\x00")),
    st.binary(max_size=300),
    tokens.map(lambda t: t.encode("utf-8", "surrogatepass")),
)

INTERESTING = [
    b"cookie",
    b"authorization",
    b"origin",
    b"x-csrf-token",
    b"sec-fetch-site",
    b"host",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"content-type",
    b"content-length",
    b"accept",
    b"upgrade",
]
header_names = st.one_of(
    st.sampled_from(INTERESTING),
    st.text(
        alphabet="abcdefghijklmnopqrstuvwxyz0123456789-!#$%&'*+.^_`|~", min_size=1, max_size=20
    ).map(str.encode),
)
STANDARD_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"]
methods = st.one_of(
    st.sampled_from(STANDARD_METHODS),
    st.sampled_from(STANDARD_METHODS),
    st.sampled_from(STANDARD_METHODS),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10),
)
paths = st.sampled_from(["/whoami"] * 6 + ["/me", "/write", "/missing"])


# --- properties -----------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(
    header=cookie_headers(),
    request=st.sampled_from([("GET", "/whoami"), ("POST", "/whoami"), ("GET", "/me")]),
)
def test_arbitrary_cookie_header_bytes(
    runner: asyncio.Runner, header: bytes, request: tuple[str, str]
) -> None:
    method, path = request
    check(run(runner, COOKIE_APP, method, path, [(b"cookie", header)]), header)


def _bindable(token: str) -> bool:
    try:
        token.encode()
    except UnicodeEncodeError:
        return False
    return True


@PROPERTY_SETTINGS
@given(
    token=tokens,
    refresh=st.sampled_from([None, GOOD_REFRESH, "refresh-bad"]),
    session=st.booleans(),
)
def test_arbitrary_token_in_the_access_cookie(
    runner: asyncio.Runner, token: str, refresh: str | None, session: bool
) -> None:
    raw = token.encode("utf-8", "surrogatepass")
    header = b"_auth=" + raw
    if refresh is not None:
        header += b"; _auth_refresh=" + refresh.encode()
    # The state cookie is that of a session of exactly these tokens (an identity needs it),
    # so that the token's signature is what decides; a token that cannot be bound (lone
    # surrogates) goes with the state cookie of another token, which must not pair with it.
    store = COOKIE_APP.user_middleware[0].kwargs["store"]
    access = token if _bindable(token) else VALID
    if session:
        state = store.state_codec.dumps("sid-1", {"n": 1}, refresh or access, (access,))
        header += f"; _auth_state={state}; _auth_csrf={SESSION['_auth_csrf']}".encode()
    elif refresh == GOOD_REFRESH:
        # The refresh cookie's session: it refreshes.
        header += f"; _auth_state={state_cookie(store, GOOD_REFRESH, access)}".encode()
    headers = [(b"cookie", header)]
    check(run(runner, COOKIE_APP, "GET", "/whoami", headers), header)
    csrf = [(b"x-csrf-token", SESSION["_auth_csrf"].encode())] if session else []
    check(run(runner, COOKIE_APP, "POST", "/write", headers + csrf), header)


@PROPERTY_SETTINGS
@given(
    scheme=st.sampled_from(
        [b"Bearer "] * 4 + [b"bearer ", b"BEARER  ", b"Bearer\t", b"Basic ", b"Bearer", b""]
    ),
    token=st.one_of(
        st.sampled_from([VALID.encode(), EXPIRED.encode()]),
        tokens.map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=300),
    ),
    copies=st.integers(min_value=1, max_value=2),
    path=st.sampled_from(["/whoami", "/me"]),
)
def test_arbitrary_token_in_a_bearer_header(
    runner: asyncio.Runner, scheme: bytes, token: bytes, copies: int, path: str
) -> None:
    value = scheme + token
    headers = [(b"authorization", value)] * copies
    check(run(runner, HEADER_APP, "GET", path, headers), value)


@PROPERTY_SETTINGS
@given(
    cookie_mode=st.booleans(),
    method=methods,
    path=paths,
    headers=st.lists(
        st.one_of(
            st.tuples(header_names, header_values),
            st.tuples(st.just(b"cookie"), cookie_headers()),
            st.tuples(
                st.just(b"authorization"),
                tokens.map(lambda t: b"Bearer " + t.encode("utf-8", "surrogatepass")),
            ),
        ),
        max_size=6,
    ),
)
def test_arbitrary_header_combinations(
    runner: asyncio.Runner,
    cookie_mode: bool,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
) -> None:
    app = COOKIE_APP if cookie_mode else HEADER_APP
    carried = b"\n".join(value for _, value in headers)
    check(run(runner, app, method, path, headers), carried)


def test_the_no_500_guard_fires(runner: asyncio.Runner) -> None:
    # The guard every test of this suite relies on, shown to fail on a 500.
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with pytest.raises(AssertionError, match="server error"):
        run(runner, broken, "GET", "/", [])  # type: ignore[arg-type]


def test_the_oracle_accepts_what_it_should() -> None:
    # The properties would pass vacuously if nothing ever authenticated: the controls.
    assert signed_by_configured_key(VALID)
    assert not signed_by_configured_key(TOKENS[2])
    assert not signed_by_configured_key(TOKENS[5])
    with asyncio.Runner() as r:
        signed_in = f"_auth={VALID}; _auth_state={SESSION['_auth_state']}".encode()
        good = run(r, COOKIE_APP, "GET", "/whoami", [(b"cookie", signed_in)])
        assert good.json() == {"auth": True, "token": VALID}
        refreshed = run(
            r,
            COOKIE_APP,
            "GET",
            "/whoami",
            [
                (
                    b"cookie",
                    f"_auth={EXPIRED}; _auth_refresh={GOOD_REFRESH}; {REFRESH_STATE}".encode(),
                )
            ],
        )
        assert refreshed.json()["auth"] is True
        assert refreshed.json()["token"] in MINTED
        bearer = run(r, HEADER_APP, "GET", "/me", [(b"authorization", b"Bearer " + VALID.encode())])
        assert bearer.json() == {"auth": True, "token": VALID}
    assert json.loads(good.body)["auth"] is True
