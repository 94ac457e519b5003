"""One app, several kinds of credential (``create_store(auth_type=...)``), through real apps.

Browsers hold the cookie session (CSRF, refresh); mobile apps, CLIs and other services send
``Authorization: Bearer``; a service behind an auth gateway verifies the gateway's access
cookie (``auth_type="gateway"``). The precedence (a valid bearer header first, then the
cookie) and the rule that a bad credential of one kind never masks a valid one of the other
are docs/behaviour.md's table, row by row.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, FastAPI
from starlette.testclient import TestClient

from fastapi_authkit import ConfigurationError, create_issuer
from fastapi_authkit.dependencies import AuthHeader, AuthStateDep, dependencies_for
from fastapi_authkit.stores import MemoryStore
from fastapi_authkit.testing import auth_client, login_as

from tests.support.apps import Recorder, build_app, build_store, client, login
from tests.support.clock import Clock
from tests.support.tokens import make_token

BOTH = ("cookie", "header")


def app_for(store: Any) -> FastAPI:
    app = build_app(store)

    @app.get("/who")
    async def who(state: AuthStateDep, header: AuthHeader) -> dict[str, Any]:
        return {
            "sub": state.claims["sub"] if state.claims else None,
            "credential": state.credential,
            "header": header,
        }

    return app


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def csrf(tc: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": tc.cookies["_auth_csrf"]}


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("cookie", "cookie"),
        ("header", "header"),
        ("gateway", "gateway"),
        (("cookie", "header"), ("cookie", "header")),
        (["header", "cookie"], ("cookie", "header")),
        (("header", "gateway"), ("gateway", "header")),
    ],
)
def test_auth_type_takes_one_kind_or_a_combination(
    clock: Clock, given: Any, normalized: Any
) -> None:
    store = build_store(clock, None, auth_type=given)
    assert store.auth_type == normalized
    kinds = (normalized,) if isinstance(normalized, str) else normalized
    assert store.credentials == frozenset(kinds)


@pytest.mark.parametrize(
    "bad",
    [
        ("cookie", "gateway"),
        (),
        ("cookie", "cookie"),
        ("cookie", "bearer"),
        "both",
        "cookie,header",
    ],
)
def test_bad_combinations_are_configuration_errors(clock: Clock, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="auth_type"):
        build_store(clock, None, auth_type=bad)


def test_gateway_mode_has_no_refresh_and_no_issuer(clock: Clock) -> None:
    with pytest.raises(ConfigurationError, match="gateway"):
        build_store(clock, Recorder(clock), auth_type="gateway")
    issuer = create_issuer(backend=MemoryStore(), signing_key="k" * 40, clock=clock)
    with pytest.raises(ConfigurationError, match="auth_type"):
        build_store(
            clock, None, token_key=None, leeway=None, auth_type="gateway", token_issuer=issuer
        )


def test_refresh_is_allowed_with_cookie_and_header(clock: Clock) -> None:
    assert build_store(clock, Recorder(clock), auth_type=BOTH).refresh is not None


# --- the precedence matrix (cookie session + bearer header) ----------------------------------


COOKIE_STATES = ("none", "valid", "expired")
HEADER_STATES = ("none", "valid", "expired", "wrong-key", "garbage", "basic")


def expected(cookie: str, header: str) -> tuple[str | None, str | None]:
    """(subject, credential) by docs/behaviour.md's table: a valid header first, then a
    valid cookie session; anything invalid counts as absent."""
    if header == "valid":
        return "mobile", "header"
    if cookie == "valid":
        return "alice", "cookie"
    return None, None


@pytest.mark.parametrize("cookie", COOKIE_STATES)
@pytest.mark.parametrize("header", HEADER_STATES)
def test_precedence_matrix(clock: Clock, cookie: str, header: str) -> None:
    tc = client(app_for(build_store(clock, None, auth_type=BOTH)))
    if cookie != "none":
        login(tc, clock, ttl=60, refresh=None)
        if cookie == "expired":
            clock.advance(120)
    value = {
        "none": None,
        "valid": f"Bearer {make_token(clock, sub='mobile')}",
        "expired": f"Bearer {make_token(clock, sub='mobile', ttl=-5)}",
        "wrong-key": f"Bearer {make_token(clock, sub='mobile', key='other-key' * 4)}",
        "garbage": "Bearer not.a.jwt",
        "basic": f"Basic {make_token(clock, sub='mobile')}",
    }[header]
    headers = {} if value is None else {"authorization": value}
    response = tc.get("/who", headers=headers)
    subject, credential = expected(cookie, header)
    assert response.json()["sub"] == subject
    assert response.json()["credential"] == credential
    if credential == "header":
        assert response.json()["header"] == value
    # A request never touches the cookies of a session it did not use (and none is cleared
    # for a bad header).
    assert response.headers.get_list("set-cookie") == []
    me = tc.get("/me", headers=headers)
    assert me.status_code == (401 if subject is None else 200)


def test_both_valid_for_different_subjects_the_header_wins(clock: Clock) -> None:
    tc = client(app_for(build_store(clock, None, auth_type=BOTH)))
    login(tc, clock, user_state={"name": "Alice"})
    response = tc.get("/me", headers=bearer(make_token(clock, sub="service-b")))
    # The header's claims: the cookie session's user state is not mixed in.
    assert response.json()["sub"] == "service-b"
    assert response.json()["user"]["sub"] == "service-b"
    assert tc.get("/me").json()["user"] == {"name": "Alice"}  # the session is intact


def test_refresh_happens_only_for_the_cookie_session(clock: Clock) -> None:
    recorder = Recorder(clock)
    tc = client(app_for(build_store(clock, recorder, auth_type=BOTH)))
    login(tc, clock, ttl=300)
    clock.advance(290)  # inside the refresh interval
    response = tc.get("/who", headers=bearer(make_token(clock, sub="mobile")))
    assert response.json()["credential"] == "header"
    assert recorder.calls == []
    assert response.headers.get_list("set-cookie") == []
    # An expired cookie session with a valid header: still no refresh.
    clock.advance(20)
    assert tc.get("/who", headers=bearer(make_token(clock, sub="mobile"))).json()["sub"] == "mobile"
    assert recorder.calls == []
    # The cookie alone: refreshed as ever.
    who = tc.get("/who").json()
    assert (who["sub"], who["credential"]) == ("alice-1", "cookie")
    assert len(recorder.calls) == 1


def test_header_only_mode_reports_the_header_credential(clock: Clock) -> None:
    tc = client(app_for(build_store(clock, None, auth_type="header")))
    assert tc.get("/who", headers=bearer(make_token(clock))).json()["credential"] == "header"
    assert tc.get("/who").json()["credential"] is None


def test_cookie_mode_reports_the_cookie_credential_and_ignores_headers(clock: Clock) -> None:
    tc = client(app_for(build_store(clock, Recorder(clock))))
    assert tc.get("/who", headers=bearer(make_token(clock, sub="mobile"))).json()["sub"] is None
    login(tc, clock)
    for _ in range(2):  # the full read, then the remembered outcome
        assert tc.get("/who").json()["credential"] == "cookie"
    # After a refresh in this request, too.
    clock.advance(250)
    who = tc.get("/who").json()
    assert (who["sub"], who["credential"]) == ("alice-1", "cookie")


# --- CSRF per credential -----------------------------------------------------------------------


def test_csrf_applies_only_to_cookie_authenticated_requests(clock: Clock) -> None:
    tc = client(app_for(build_store(clock, None, auth_type=BOTH)))
    token = make_token(clock, sub="mobile")
    # A bearer request needs no CSRF header, also from another origin (a browser never
    # attaches an Authorization header by itself).
    assert tc.post("/write", headers=bearer(token)).status_code == 200
    cross = {"origin": "https://evil.example", "sec-fetch-site": "cross-site"}
    assert tc.post("/write", headers={**bearer(token), **cross}).status_code == 200
    login(tc, clock)
    assert tc.post("/write").status_code == 403
    assert tc.post("/write", headers=csrf(tc)).status_code == 200
    assert tc.post("/write", headers={**csrf(tc), **cross}).status_code == 403
    # The header is the credential: the cookies beside it are not used, so not checked.
    assert tc.post("/write", headers=bearer(token)).status_code == 200
    # A header that is no credential leaves the cookie session, and its CSRF check.
    for bad in ("Bearer not.a.jwt", f"Bearer {make_token(clock, ttl=-5)}", f"Basic {token}"):
        assert tc.post("/write", headers={"authorization": bad}).status_code == 403, bad
        response = tc.post("/write", headers={"authorization": bad, **csrf(tc)})
        assert response.status_code == 200, bad


def test_sign_in_and_sign_out_work_with_cookie_and_header(clock: Clock) -> None:
    tc = client(app_for(build_store(clock, None, auth_type=BOTH)))
    login(tc, clock)
    assert tc.get("/who").json()["credential"] == "cookie"
    assert tc.post("/logout", headers=csrf(tc)).status_code == 200
    assert tc.get("/who").json()["credential"] is None


# --- the gateway cookie --------------------------------------------------------------------------


def gateway_client(clock: Clock, **options: Any) -> TestClient:
    store = build_store(clock, None, auth_type="gateway", **options)
    return client(app_for(store))


def test_gateway_cookie_is_an_identity_without_a_state_cookie(clock: Clock) -> None:
    tc = gateway_client(clock)
    tc.cookies.set("_auth", make_token(clock, sub="gw-user"))
    response = tc.get("/who")
    assert response.json()["sub"] == "gw-user"
    assert response.json()["credential"] == "gateway"
    assert response.headers.get_list("set-cookie") == []
    me = tc.get("/me").json()
    assert me["sub"] == "gw-user"
    assert me["user"]["sub"] == "gw-user"  # the claims


def test_the_default_mode_still_refuses_a_token_without_its_state_cookie(clock: Clock) -> None:
    tc = client(app_for(build_store(clock, Recorder(clock))))
    tc.cookies.set("_auth", make_token(clock, sub="gw-user"))
    assert tc.get("/who").json() == {"sub": None, "credential": None, "header": None}
    assert tc.get("/me").status_code == 401


def test_gateway_cookie_expired_or_forged_is_anonymous_and_left_alone(clock: Clock) -> None:
    tc = gateway_client(clock)
    for token in (make_token(clock, ttl=-5), make_token(clock, key="other-key" * 4), "x.y.z"):
        tc.cookies.set("_auth", token)
        response = tc.get("/me")
        assert response.status_code == 401
        assert response.headers.get_list("set-cookie") == []  # the gateway's cookie


def test_gateway_cookie_uses_the_user_loader(clock: Clock) -> None:
    tc = gateway_client(clock, user_loader=lambda claims, state: {"id": claims["sub"]})
    tc.cookies.set("_auth", make_token(clock, sub="gw-user"))
    assert tc.get("/me").json()["user"] == {"id": "gw-user"}


def test_gateway_mode_refuses_sign_in_and_sign_out(clock: Clock) -> None:
    tc = gateway_client(clock)
    with pytest.raises(ConfigurationError, match="gateway"):
        login(tc, clock)
    with pytest.raises(ConfigurationError, match="gateway"):
        tc.post("/logout", headers={"origin": "https://testserver"})


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 403),  # no proof of where it came from: double submit is not available
        ({"origin": "https://testserver"}, 200),
        ({"sec-fetch-site": "same-origin"}, 200),
        ({"sec-fetch-site": "same-site"}, 403),  # a sibling under the gateway's domain
        ({"sec-fetch-site": "none"}, 403),
        ({"origin": "https://evil.example"}, 403),
        ({"origin": "https://sibling.example.com"}, 403),
        ({"origin": "https://testserver", "sec-fetch-site": "cross-site"}, 403),
        ({"origin": "null"}, 403),
    ],
)
def test_gateway_cookie_unsafe_methods_need_a_same_origin_proof(
    clock: Clock, headers: dict[str, str], status: int
) -> None:
    tc = gateway_client(clock)
    tc.cookies.set("_auth", make_token(clock, sub="gw-user"))
    assert tc.post("/write", headers=headers).status_code == status
    assert tc.get("/me").status_code == 200  # safe methods need none


def test_gateway_cookie_allowed_origins_pass(clock: Clock) -> None:
    tc = gateway_client(clock, allowed_origins=["https://app.example.com"])
    tc.cookies.set("_auth", make_token(clock, sub="gw-user"))
    response = tc.post(
        "/write", headers={"origin": "https://app.example.com", "sec-fetch-site": "same-site"}
    )
    assert response.status_code == 200


def test_gateway_and_header_precedence(clock: Clock) -> None:
    tc = client(app_for(build_store(clock, None, auth_type=("gateway", "header"))))
    tc.cookies.set("_auth", make_token(clock, sub="gw-user"))
    assert tc.get("/who").json()["credential"] == "gateway"
    who = tc.get("/who", headers=bearer(make_token(clock, sub="svc"))).json()
    assert (who["sub"], who["credential"]) == ("svc", "header")
    who = tc.get("/who", headers={"authorization": "Bearer junk"}).json()
    assert (who["sub"], who["credential"]) == ("gw-user", "gateway")
    # A bearer POST needs no Origin; the gateway cookie's needs one.
    assert tc.post("/write", headers=bearer(make_token(clock, sub="svc"))).status_code == 200
    assert tc.post("/write").status_code == 403


def test_dependencies_for_a_store_with_both_kinds_answer_for_either(clock: Clock) -> None:
    store = build_store(clock, None, auth_type=BOTH)
    deps = dependencies_for(store)
    app = build_app(store)

    @app.get("/deps")
    async def route(
        user: Any = Depends(deps.current_user),
        header: str | None = Depends(deps.auth_header),
        signed_in: bool = Depends(deps.is_authenticated),
        state: Any = Depends(deps.auth_state),
        maybe: Any = Depends(deps.auth_user),
    ) -> dict[str, Any]:
        return {
            "sub": user["sub"],
            "credential": state.credential,
            "ok": signed_in and maybe is not None,
        }

    @app.get("/page", dependencies=[Depends(deps.require_auth(fallback_path="/in"))])
    async def page() -> bool:
        return True

    tc = client(app)
    assert tc.get("/deps").status_code == 401
    assert (
        tc.get("/page", headers={"accept": "text/html"}, follow_redirects=False).headers["location"]
        == "/in"
    )
    token = make_token(clock, sub="mobile")
    assert tc.get("/deps", headers=bearer(token)).json() == {
        "sub": "mobile",
        "credential": "header",
        "ok": True,
    }
    assert tc.get("/page", headers=bearer(token)).json() is True
    login(tc, clock)
    assert tc.get("/deps").json()["credential"] == "cookie"


@pytest.mark.parametrize(
    ("auth_type", "credential"),
    [(BOTH, "cookie"), ("gateway", "gateway"), (("gateway", "header"), "header")],
)
def test_login_as_follows_the_credentials(clock: Clock, auth_type: Any, credential: str) -> None:
    app = app_for(build_store(clock, None, auth_type=auth_type))
    with auth_client(app) as tc:
        login_as(tc, "tester")
        who = tc.get("/who").json()
        assert (who["sub"], who["credential"]) == ("tester", credential)
