"""SECURITY.md, "Cookies": strict reading of incoming cookies, exact Set-Cookie attributes,
size limits on both sides, and X-Forwarded-* headers that change nothing.

Raw ASGI messages are used wherever the exact bytes matter (latin-1, quotes, duplicates).

"X-Forwarded-* from an untrusted peer": the kit never reads those headers at all; trusting a
proxy is the server's job (uvicorn ``--forwarded-allow-ips`` rewrites the ASGI scope). So the
cases send them straight from the client and show they change nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fastapi_authkit import ConfigurationError, RefreshParam, RefreshResult, sign_in
from fastapi_authkit.decision import Reading
from fastapi_authkit.errors import CookieTooLargeError
from fastapi_authkit.reader import RequestReader
from fastapi_authkit.tokens import TokenVerifier
from fastapi_authkit.userstate import StateCodec

from .helpers import AUTH_COOKIES, Reply, asgi_websocket, call, security_app, state_for
from tests.support.apps import Recorder, build_store
from tests.support.clock import Clock
from tests.support.tokens import make_token

LIMIT = 4096


def whoami(app: FastAPI, *cookie_headers: bytes, **kw: Any) -> Reply:
    return call(app, "GET", "/whoami", [(b"cookie", c) for c in cookie_headers], **kw)


def sized_token(clock: Clock, length: int) -> str:
    """A correctly signed token of exactly ``length`` characters."""
    base = len(make_token(clock, pad=""))
    for pad in range(max(0, (length - base) * 3 // 4 - 8), length):
        token = make_token(clock, pad="x" * pad)
        if len(token) == length:
            return token
        if len(token) > length:
            break
    raise AssertionError(f"no token of exactly {length} characters")


def login_jar(app: FastAPI, clock: Clock, **body: Any) -> dict[str, str]:
    payload = {"token": make_token(clock, ttl=100), "refresh": "refresh-0", **body}
    reply = call(
        app,
        "POST",
        "/login",
        [(b"content-type", b"application/json")],
        body=json.dumps(payload).encode(),
    )
    assert reply.status == 200, reply
    return {k: v.split(";", 1)[0].split("=", 1)[1] for k, v in reply.set_cookies().items()}


def header_of(jar: dict[str, str]) -> bytes:
    return "; ".join(f"{k}={v}" for k, v in jar.items()).encode()


# --- size: over 4096 bytes is ignored before any decoding ---------------------------------------


def test_access_cookie_over_4096_bytes_is_ignored_before_decoding(
    clock: Clock, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_limit = sized_token(clock, LIMIT - len("_auth"))
    over = sized_token(clock, LIMIT - len("_auth") + 1)
    control = f"_auth={at_limit}; ".encode() + state_for(app, at_limit)
    assert whoami(app, control).json()["auth"] is True

    verified: list[int] = []
    real = TokenVerifier.verify

    def spy(self: TokenVerifier, token: str, now: float) -> Any:
        verified.append(len(token))
        return real(self, token, now)

    monkeypatch.setattr(TokenVerifier, "verify", spy)
    reply = whoami(app, f"_auth={over}; ".encode() + state_for(app, over))
    assert reply.json()["auth"] is False
    assert verified == []  # never reached the verifier


def test_state_cookie_over_4096_bytes_is_ignored_before_decoding(
    clock: Clock, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = build_store(clock, recorder)
    app = security_app(store)
    big_state = store.state_codec.dumps("sid", {"blob": secrets.token_urlsafe(4000)}, "token")
    assert len(big_state) > LIMIT
    loaded: list[str] = []
    real = StateCodec.loads

    def spy(self: StateCodec, value: str) -> Any:
        loaded.append(value)
        return real(self, value)

    monkeypatch.setattr(StateCodec, "loads", spy)
    token = make_token(clock)
    reply = call(
        app, "GET", "/me", [(b"cookie", f"_auth={token}; _auth_state={big_state}".encode())]
    )
    # The state cookie is absent, so the token is no identity (the user would be the claims
    # instead of the user state): anonymous, and the oversized value never decoded.
    assert reply.status == 401
    assert loaded == []


def test_refresh_cookie_over_4096_bytes_is_ignored(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    huge = "r" * LIMIT
    expired = make_token(clock, ttl=-10)
    header = f"_auth={expired}; _auth_refresh={huge}; ".encode() + state_for(app, expired, huge)
    reply = whoami(app, header)
    assert reply.json()["auth"] is False
    assert recorder.calls == []


@pytest.mark.parametrize(
    "header",
    [
        b"; ".join(b"c%d=%s" % (i, b"v" * 60) for i in range(1000)),
        b";" * 65536,
        b"=" * 65536,
        b"_auth=" + b"a" * 65536,
        b"_auth_refresh=" + b"a" * 65536,
        b"_auth=" * 10923,
        b" " * 65536,
        b"\xff" * 65536,
        (b"_auth_state=" + b"x." * 50 + b"; ") * 1000,
    ],
    ids=[
        "many",
        "semicolons",
        "equals",
        "huge-access",
        "huge-refresh",
        "repeated-name",
        "spaces",
        "high-bytes",
        "many-states",
    ],
)
def test_64_kib_cookie_header_is_no_500(
    clock: Clock, app: FastAPI, recorder: Recorder, header: bytes
) -> None:
    assert len(header) >= 60_000
    assert whoami(app, header).json()["auth"] is False
    assert call(app, "GET", "/me", [(b"cookie", header)]).status == 401
    assert call(app, "POST", "/write", [(b"cookie", header)]).status in (401, 403)
    assert recorder.calls == []


def test_64_kib_of_junk_around_a_valid_session_still_authenticates(
    clock: Clock, app: FastAPI
) -> None:
    junk = b"; ".join(b"c%d=%s" % (i, b"v" * 60) for i in range(1000))
    token = make_token(clock)
    session = b"_auth=" + token.encode() + b"; " + state_for(app, token)
    assert whoami(app, junk + b"; " + session + b"; " + junk).json()["auth"] is True
    many_headers = [junk] * 16 + [session]
    assert whoami(app, *many_headers).json()["auth"] is True


def test_many_cookie_headers_cost_what_one_header_of_their_size_costs(clock: Clock) -> None:
    # HTTP/2 may split the Cookie header into one header per cookie; joining them must be
    # linear (issue 17, item 9: it was quadratic). Measured against the same bytes in one
    # header in the same run, so machine load cancels out; quadratic joining of these
    # 20,000 headers is over a hundred times the single header, linear about one time.
    store = build_store(clock, None, verified_token_cache=0)  # every read a full one
    reader = RequestReader.for_store(store)
    token = make_token(clock).encode()
    state = store.state_codec.dumps("sid-0", None, token.decode(), (token.decode(),))
    crumbs = [b"c%d=%s" % (i, b"v" * 40) for i in range(20_000)]
    crumbs += [b"_auth=" + token, b"_auth_state=" + state.encode()]
    split = [(b"cookie", crumb) for crumb in crumbs]
    whole = [(b"cookie", b"; ".join(crumbs))]

    def cost(headers: list[tuple[bytes, bytes]]) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            decision = reader.read(headers, "GET", "/", "https", clock())
            best = min(best, time.perf_counter() - started)
            assert isinstance(decision, Reading)  # nothing remembered: the full read
            assert decision.token == token.decode()
        return best

    assert cost(split) < 10 * cost(whole)


# --- quoted, escaped, nameless, latin-1: absent ---------------------------------------------------


def _odd_access_cookies(token: bytes) -> dict[str, bytes]:
    return {
        "quoted": b'_auth="' + token + b'"',
        "quoted-open": b'_auth="' + token,
        "escaped-quote": b'_auth=\\"' + token + b'\\"',
        "backslash": b"_auth=" + token + b"\\",
        "inner-space": b"_auth=" + token[:10] + b" " + token[10:],
        "inner-comma": b"_auth=" + token[:10] + b"," + token[10:],
        "nameless": b"=" + token,
        "no-equals": token,
        "latin1-in-value": b"_auth=" + token + b"\xe9",
        "latin1-in-name": b"_auth\xe9=" + token,
        "utf8-in-value": b"_auth=" + token + "é".encode(),
        "nul-in-value": b"_auth=" + token[:10] + b"\x00" + token[10:],
        "tab-in-value": b"_auth=" + token[:10] + b"\t" + token[10:],
        "empty-value": b"_auth=",
        "percent-encoded": b"_auth=" + token.replace(b".", b"%2E"),
        "upper-case-name": b"_AUTH=" + token,
        "prefixed-name": b"x_auth=" + token,
    }


ODD = list(_odd_access_cookies(b"x" * 20))


@pytest.mark.parametrize("kind", ODD)
def test_quoted_escaped_nameless_or_latin1_access_cookie_is_absent(
    clock: Clock, app: FastAPI, recorder: Recorder, kind: str
) -> None:
    token = make_token(clock)
    # With the state cookie of that token: only the odd access cookie is wrong.
    header = _odd_access_cookies(token.encode())[kind] + b"; " + state_for(app, token)
    assert whoami(app, header).json()["auth"] is False
    assert call(app, "GET", "/me", [(b"cookie", header)]).status == 401
    assert recorder.calls == []


@pytest.mark.parametrize(
    "refresh",
    [b'"refresh-0"', b"refresh-0\xe9", b"refresh\\0", b"refresh 0", b""],
    ids=["quoted", "latin1", "backslash", "space", "empty"],
)
def test_malformed_refresh_cookie_is_absent_and_never_sent_to_the_callback(
    clock: Clock, app: FastAPI, recorder: Recorder, refresh: bytes
) -> None:
    expired = make_token(clock, ttl=-10)
    # With the state cookie of refresh-0's session: only the odd refresh cookie is wrong.
    state = state_for(app, expired, "refresh-0")
    header = b"_auth=" + expired.encode() + b"; _auth_refresh=" + refresh + b"; " + state
    assert whoami(app, header).json()["auth"] is False
    state = state_for(app, None, "refresh-0")
    assert whoami(app, b"_auth_refresh=" + refresh + b"; " + state).json()["auth"] is False
    assert recorder.calls == []


# --- duplicates: never guess which copy is ours ---------------------------------------------------


def test_duplicate_access_cookie_is_not_authenticated(clock: Clock, app: FastAPI) -> None:
    good = make_token(clock).encode()
    forged = make_token(clock, key="attacker-key-0123456789abcdef0123456789").encode()
    state = state_for(app, good.decode())
    assert whoami(app, b"_auth=" + good, state).json()["auth"] is True  # the control
    for headers in (
        [b"_auth=" + good + b"; _auth=" + good],
        [b"_auth=" + forged + b"; _auth=" + good],  # Starlette alone would keep the last
        [b"_auth=" + good + b"; _auth=" + forged],
        [b"_auth=" + good, b"_auth=" + good],  # across two Cookie headers
        [b"_auth=" + forged, b"_auth=" + good],
        [b'_auth="x"; _auth=' + good],
        [b" _auth=" + good + b";_auth =" + good],
    ):
        assert whoami(app, *headers, state).json()["auth"] is False, headers


def test_duplicate_refresh_cookie_is_never_refreshed(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    expired = make_token(clock, ttl=-10)
    header = f"_auth={expired}; _auth_refresh=refresh-0; _auth_refresh=refresh-attacker"
    for refresh in ("refresh-0", "refresh-attacker"):  # the state cookie of either session
        assert whoami(app, header.encode(), state_for(app, expired, refresh)).json() == {
            "auth": False,
            "token": None,
            "sub": None,
            "unavailable": False,
        }
    assert recorder.calls == []


def test_duplicate_state_cookie_is_ignored(clock: Clock, app: FastAPI) -> None:
    jar = login_jar(app, clock, user_state={"role": "user"})
    reply = call(app, "GET", "/me", [(b"cookie", header_of(jar))])
    assert reply.json()["user"] == {"role": "user"}  # the control
    doubled = header_of(jar) + b"; _auth_state=" + jar["_auth_state"].encode()
    reply = call(app, "GET", "/me", [(b"cookie", doubled)])
    # No state cookie (a doubled one is absent), so no identity: never the claims instead.
    assert reply.status == 401
    assert reply.set_cookies() == {}  # the cookies are left as they are


# --- every Set-Cookie carries exactly the configured flags ----------------------------------------

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "insecure": {"cookie_secure": False},
    "strict": {"cookie_samesite": "strict"},
    "samesite-none": {"cookie_samesite": "none"},
    "domain": {"cookie_domain": "example.com"},
    "dot-domain": {"cookie_domain": ".example.com"},
    "path": {"cookie_path": "/app"},
    "host-prefix": {"auth_name": "__Host-auth"},
    "secure-prefix": {
        "auth_name": "__Secure-auth",
        "cookie_domain": "example.com",
        "cookie_samesite": "strict",
        "cookie_path": "/api/v1",
    },
    "insecure-strict-path-domain": {
        "cookie_secure": False,
        "cookie_samesite": "strict",
        "cookie_domain": "app.example.org",
        "cookie_path": "/x",
    },
}


def parse_set_cookie(value: str) -> tuple[str, str, list[tuple[str, str | None]]]:
    pair, *attributes = value.split("; ")
    name, _, cookie_value = pair.partition("=")
    parsed: list[tuple[str, str | None]] = []
    for attribute in attributes:
        key, sep, attr_value = attribute.partition("=")
        parsed.append((key, attr_value if sep else None))
    return name, cookie_value, parsed


def expected_attributes(options: dict[str, Any], name: str, *, deletion: bool) -> set[Any]:
    auth_name = options.get("auth_name", "_auth")
    expected: set[Any] = {("Path", options.get("cookie_path", "/"))}
    if not deletion:
        expected.add("Max-Age")
    else:
        expected |= {("Max-Age", "0"), ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")}
    if name != f"{auth_name}_csrf":
        expected.add(("HttpOnly", None))
    if options.get("cookie_secure", True):
        expected.add(("Secure", None))
    if options.get("cookie_domain"):
        expected.add(("Domain", options["cookie_domain"]))
    expected.add(("SameSite", options.get("cookie_samesite", "lax").capitalize()))
    return expected


def assert_exact_flags(reply: Reply, options: dict[str, Any], *, deletion: bool) -> None:
    auth_name = options.get("auth_name", "_auth")
    cookies = reply.header_values(b"set-cookie")
    assert cookies, reply
    names = set()
    for raw in cookies:
        name, value, attributes = parse_set_cookie(raw.decode("ascii"))
        names.add(name)
        keys = [key for key, _ in attributes]
        assert len(keys) == len(set(keys)), f"repeated attribute in {raw!r}"
        got = {(k, v) if k != "Max-Age" or deletion else k for k, v in attributes}
        assert got == expected_attributes(options, name, deletion=deletion), raw
        if deletion:
            assert value == ""
        else:
            max_age = dict(attributes)["Max-Age"]
            assert max_age is not None
            assert int(max_age) > 0
    assert names <= {auth_name + suffix for suffix in ("", "_type", "_state", "_refresh", "_csrf")}
    assert reply.header_values(b"cache-control") == [b"no-store"]


@pytest.mark.parametrize("config", list(CONFIGS))
def test_every_set_cookie_carries_exactly_the_configured_flags(
    clock: Clock, recorder: Recorder, config: str
) -> None:
    options = CONFIGS[config]
    auth_name = options.get("auth_name", "_auth")
    app = security_app(build_store(clock, recorder, **options))
    body = {"token": make_token(clock, ttl=10), "refresh": "refresh-0", "user_state": {"n": 1}}
    signed_in = call(
        app,
        "POST",
        "/login",
        [(b"content-type", b"application/json")],
        body=json.dumps(body).encode(),
    )
    assert signed_in.status == 200
    assert_exact_flags(signed_in, options, deletion=False)
    assert len(signed_in.header_values(b"set-cookie")) == 5
    jar = {k: v.split(";")[0].split("=", 1)[1] for k, v in signed_in.set_cookies().items()}
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items()).encode()

    clock.advance(20)  # expired: the refresh rewrites the cookies
    refreshed = call(app, "GET", "/me", [(b"cookie", cookie)])
    assert refreshed.status == 200
    assert_exact_flags(refreshed, options, deletion=False)

    signed_out = call(
        app,
        "POST",
        "/logout",
        [(b"cookie", cookie), (b"x-csrf-token", jar[f"{auth_name}_csrf"].encode())],
    )
    assert signed_out.status == 200
    assert_exact_flags(signed_out, options, deletion=True)
    assert len(signed_out.header_values(b"set-cookie")) == 5

    async def ended(param: RefreshParam) -> RefreshResult:
        return RefreshResult(is_success=False)

    recorder.behaviour = ended
    clock.advance(400)
    cleared = call(app, "GET", "/me", [(b"cookie", cookie)])
    assert cleared.status == 401
    assert_exact_flags(cleared, options, deletion=True)

    refused = call(app, "POST", "/write", [(b"cookie", cookie)])  # no CSRF header
    assert refused.status == 403
    assert refused.header_values(b"set-cookie") == []


@pytest.mark.parametrize(
    "options",
    [
        {"auth_name": "__Host-auth", "cookie_secure": False},
        {"auth_name": "__Host-auth", "cookie_domain": "example.com"},
        {"auth_name": "__Host-auth", "cookie_path": "/app"},
        {"auth_name": "__host-auth", "cookie_secure": False},
        {"auth_name": "__HOST-auth", "cookie_domain": "example.com"},
        {"auth_name": "__Secure-auth", "cookie_secure": False},
        {"auth_name": "__SECURE-auth", "cookie_secure": False},
        {"cookie_samesite": "none", "cookie_secure": False},
        {"cookie_samesite": "None"},
        {"cookie_path": "/a;b"},
        {"cookie_path": "/a\r\nSet-Cookie: x=1"},
        {"cookie_domain": "example.com; Secure"},
        {"auth_name": "bad name"},
        {"auth_name": "_auth;x"},
    ],
)
def test_cookie_configuration_that_a_browser_would_reject_is_a_configuration_error(
    clock: Clock, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        build_store(clock, None, **options)


# --- issuing: over 4096 bytes is an error at issue time -------------------------------------------


def test_an_issued_cookie_over_4096_bytes_is_an_error_at_issue(clock: Clock) -> None:
    app = security_app(build_store(clock, None))
    errors: list[CookieTooLargeError] = []

    @app.post("/big-login")
    async def big_login(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            sign_in(
                request,
                auth={"token": body["token"]},
                refresh=body.get("refresh"),
                user_state=body.get("user_state"),
            )
        except CookieTooLargeError as exc:
            errors.append(exc)
            return JSONResponse({"error": "too large"}, status_code=413)
        return JSONResponse({"ok": True})

    cases = [
        {"token": sized_token(clock, LIMIT)},  # "_auth" + 4096: one byte too many
        {"token": make_token(clock), "refresh": "r" * LIMIT},
        {"token": make_token(clock), "user_state": {"blob": secrets.token_urlsafe(4000)}},
    ]
    for case in cases:
        reply = call(
            app,
            "POST",
            "/big-login",
            [(b"content-type", b"application/json")],
            body=json.dumps(case).encode(),
        )
        assert reply.status == 413
        assert reply.header_values(b"set-cookie") == []  # nothing was queued
    assert len(errors) == 3
    assert all(e.size > e.limit == LIMIT for e in errors)
    ok = {"token": sized_token(clock, LIMIT - len("_auth"))}
    reply = call(
        app,
        "POST",
        "/big-login",
        [(b"content-type", b"application/json")],
        body=json.dumps(ok).encode(),
    )
    assert reply.status == 200


# --- X-Forwarded-* never changes the flags or the expected origin ---------------------------------

FORWARDED = [
    (b"x-forwarded-proto", b"http"),
    (b"x-forwarded-host", b"evil.example"),
    (b"x-forwarded-for", b"198.51.100.1"),
    (b"x-forwarded-port", b"80"),
    (b"x-forwarded-scheme", b"http"),
    (b"forwarded", b"for=198.51.100.1;host=evil.example;proto=http"),
    (b"x-original-host", b"evil.example"),
]


def _attributes(reply: Reply) -> dict[str, list[Any]]:
    return {
        name: sorted((k, v) for k, v in attributes if k != "Max-Age")
        for name, _, attributes in (
            parse_set_cookie(v.decode()) for v in reply.header_values(b"set-cookie")
        )
    }


@pytest.mark.parametrize("config", ["default", "domain", "insecure", "strict"])
def test_forwarded_headers_never_change_cookie_flags(
    clock: Clock, recorder: Recorder, config: str
) -> None:
    app = security_app(build_store(clock, recorder, **CONFIGS[config]))
    body = json.dumps({"token": make_token(clock, ttl=10), "refresh": "refresh-0"}).encode()
    json_type = [(b"content-type", b"application/json")]
    plain = call(app, "POST", "/login", json_type, body=body)
    forwarded = call(app, "POST", "/login", json_type + FORWARDED, body=body)
    over_http = call(
        app,
        "POST",
        "/login",
        [*json_type, (b"x-forwarded-proto", b"https")],
        body=body,
        scheme="http",
    )
    assert _attributes(plain) == _attributes(forwarded) == _attributes(over_http)
    assert_exact_flags(forwarded, CONFIGS[config], deletion=False)
    assert_exact_flags(over_http, CONFIGS[config], deletion=False)


def test_forwarded_headers_never_change_the_expected_origin(clock: Clock, app: FastAPI) -> None:
    jar = login_jar(app, clock)
    session = [(b"cookie", header_of(jar)), (b"x-csrf-token", jar["_auth_csrf"].encode())]

    def write(*extra: tuple[bytes, bytes]) -> int:
        return call(app, "POST", "/write", [*session, *extra]).status

    assert write((b"origin", b"https://testserver")) == 200  # the control
    assert write((b"origin", b"https://testserver"), *FORWARDED) == 200
    assert write((b"origin", b"https://evil.example"), *FORWARDED) == 403
    assert write((b"origin", b"http://testserver"), (b"x-forwarded-proto", b"http")) == 403
    assert (
        write((b"origin", b"https://evil.example"), (b"x-forwarded-host", b"evil.example")) == 403
    )
    assert (
        write(
            (b"origin", b"https://evil.example"),
            (b"forwarded", b"host=evil.example;proto=https"),
        )
        == 403
    )


def test_forwarded_headers_never_change_the_websocket_origin_check(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    import anyio

    jar = login_jar(app, clock)
    cookie = (b"cookie", header_of(jar))

    async def handshake(*extra: tuple[bytes, bytes]) -> list[str]:
        return [m["type"] for m in await asgi_websocket(app, "/ws", [cookie, *extra])]

    async def run() -> None:
        own = await handshake((b"origin", b"https://testserver"), *FORWARDED)
        assert own[0] == "websocket.accept"
        foreign = await handshake(
            (b"origin", b"https://evil.example"), (b"x-forwarded-host", b"evil.example")
        )
        assert foreign == ["websocket.close"]

    anyio.run(run)
    assert recorder.calls == []


def test_auth_cookie_names_are_the_five_documented(clock: Clock, app: FastAPI) -> None:
    jar = login_jar(app, clock)
    assert set(jar) == set(AUTH_COOKIES)
