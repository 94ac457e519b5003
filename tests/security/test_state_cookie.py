"""SECURITY.md, "State cookie": the signed user-state cookie is ignored unless it is exactly
what this configuration signed, under its salt, within its max age, with a live key.

"Ignored" means, through the real app: the request is anonymous, however valid its access
token (an identity is the access token *with* its session's state cookie, so a route never
sees the token's claims where it expects the user state), its cookies are left as they are,
the session's CSRF binding is gone (an unsafe request is refused), the refresh callback is
not called, and nothing answers 500.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from fastapi import FastAPI
from itsdangerous import TimestampSigner, URLSafeSerializer, URLSafeTimedSerializer

from fastapi_authkit import RefreshParam, RefreshResult, create_refresh

from .helpers import Reply, b64url, call, flip_char, security_app
from tests.support.apps import Recorder, build_store
from tests.support.clock import Clock
from tests.support.tokens import SECRET_KEY, make_token

OLD_KEY = "old-secret-key-0123456789abcdef0123456789"
NEW_KEY = "new-secret-key-0123456789abcdef0123456789"
STATE = {"role": "user"}
ADMIN = {"role": "admin"}


def login(
    app: FastAPI,
    clock: Clock,
    *,
    ttl: float = 300,
    sub: str = "alice",
    refresh: str = "refresh-0",
    user_state: Any = STATE,
) -> dict[str, str]:
    body = {"token": make_token(clock, ttl=ttl, sub=sub), "refresh": refresh}
    body["user_state"] = user_state
    reply = call(
        app,
        "POST",
        "/login",
        [(b"content-type", b"application/json")],
        body=json.dumps(body).encode(),
    )
    assert reply.status == 200
    return written(reply)


def written(reply: Reply) -> dict[str, str]:
    """The cookie values ``reply`` sets, by name."""
    return {k: v.split(";", 1)[0].split("=", 1)[1] for k, v in reply.set_cookies().items()}


def cookie(jar: dict[str, str], **override: str) -> tuple[bytes, bytes]:
    merged = {**jar, **{k.replace("auth", "_auth", 1): v for k, v in override.items()}}
    return (b"cookie", "; ".join(f"{k}={v}" for k, v in merged.items()).encode())


def me(app: FastAPI, jar: dict[str, str], **override: str) -> Reply:
    return call(app, "GET", "/me", [cookie(jar, **override)])


def write(app: FastAPI, jar: dict[str, str], **override: str) -> Reply:
    csrf = (b"x-csrf-token", jar["_auth_csrf"].encode())
    return call(app, "POST", "/write", [cookie(jar, **override), csrf])


def assert_state_accepted(app: FastAPI, jar: dict[str, str], **override: str) -> None:
    reply = me(app, jar, **override)
    assert reply.status == 200
    assert reply.json()["user"] == STATE
    assert write(app, jar, **override).status == 200


def assert_state_ignored(app: FastAPI, jar: dict[str, str], **override: str) -> None:
    reply = me(app, jar, **override)
    assert reply.status == 401  # anonymous: never the claims in place of the user state
    assert reply.header_values(b"set-cookie") == []  # the cookies are left as they are
    whoami = call(app, "GET", "/whoami", [cookie(jar, **override)])
    assert whoami.json() == {"auth": False, "token": None, "sub": None, "unavailable": False}
    refused = write(app, jar, **override)
    assert refused.status == 403  # no verifiable session, so no CSRF binding
    assert refused.header_values(b"set-cookie") == []


def test_control_the_state_cookie_is_accepted(clock: Clock, app: FastAPI) -> None:
    assert_state_accepted(app, login(app, clock))


def _altered(value: str) -> dict[str, str]:
    # rsplit: a payload that compresses well is zlib-compressed, marked by a leading ".".
    payload, timestamp, signature = value.rsplit(".", 2)
    # Never the last character: unpadded base64 leaves unused bits there (see flip_char).
    edited_payload = flip_char(payload, len(payload) // 2)
    edited_timestamp = flip_char(timestamp, 0)
    forged_payload = b64url(json.dumps({"s": "attacker-sid", "u": {"role": "admin"}}).encode())
    return {
        "signature-first-char": f"{payload}.{timestamp}.{flip_char(signature, 0)}",
        "signature-middle-char": f"{payload}.{timestamp}.{flip_char(signature, 20)}",
        "signature-removed": f"{payload}.{timestamp}.",
        "signature-of-other-value": f"{forged_payload}.{timestamp}.{signature}",
        "payload-edited": f"{edited_payload}.{timestamp}.{signature}",
        "timestamp-edited": f"{payload}.{edited_timestamp}.{signature}",
        "truncated-by-one": value[:-1],
        "truncated-to-half": value[: len(value) // 2],
        "truncated-to-payload": payload,
        "truncated-to-payload-and-timestamp": f"{payload}.{timestamp}",
        "extra-segment": f"{value}.{signature}",
        "garbage": "garbage",
        "dots": "...",
    }


ALTERATIONS = list(_altered("payload.tstamp." + "s" * 43))  # the names only


@pytest.mark.parametrize("how", ALTERATIONS)
def test_tampered_or_truncated_state_cookie_is_ignored(
    clock: Clock, app: FastAPI, recorder: Recorder, how: str
) -> None:
    jar = login(app, clock)
    forged = _altered(jar["_auth_state"])[how]
    assert_state_ignored(app, jar, auth_state=forged)
    assert recorder.calls == []


def _signed_elsewhere(
    sid: str,
    clock: Clock,
    user_state: Any,
    binding: str,
    access: tuple[str, ...] | None = (),
) -> dict[str, str]:
    """The victim's session id (and bindings) and chosen user state, signed every way but
    the right one (and, as the control, the right way), stamped with the app's clock.
    ``access`` None leaves the access-token binding out, as version 0.1.0 did."""
    data: dict[str, Any] = {"s": sid, "u": user_state, "b": binding}
    if access is not None:
        data["a"] = list(access)
    sha256 = {"digest_method": hashlib.sha256}

    class Stamped(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    def timed(secret: str, salt: str | None, **signer_kwargs: Any) -> str:
        return URLSafeTimedSerializer(
            secret, salt=salt, signer=Stamped, signer_kwargs=signer_kwargs
        ).dumps(data)

    return {
        "control": timed(SECRET_KEY, "fastapi-authkit.state", **sha256),
        "wrong-salt": timed(SECRET_KEY, "another-salt", **sha256),
        "csrf-salt": timed(SECRET_KEY, "fastapi-authkit.csrf", **sha256),
        "default-itsdangerous-salt": timed(SECRET_KEY, "itsdangerous"),
        "no-salt-sha1": timed(SECRET_KEY, None),
        "right-salt-sha1": timed(SECRET_KEY, "fastapi-authkit.state"),
        "right-salt-other-key": timed(OLD_KEY, "fastapi-authkit.state", **sha256),
        "untimed-right-salt": URLSafeSerializer(
            SECRET_KEY, salt="fastapi-authkit.state", signer_kwargs=sha256
        ).dumps(data),
    }


def test_control_a_state_signed_the_right_way_is_accepted(clock: Clock, app: FastAPI) -> None:
    # Proves the forging helper below is sound: only the salt/key/digest differ.
    jar = login(app, clock)
    store = app.user_middleware[0].kwargs["store"]
    victim = store.state_codec.loads(jar["_auth_state"])
    forged = _signed_elsewhere(victim.state_id, clock, STATE, victim.binding, victim.access)
    assert_state_accepted(app, jar, auth_state=forged["control"])


@pytest.mark.parametrize(
    "how",
    [
        "wrong-salt",
        "csrf-salt",
        "default-itsdangerous-salt",
        "no-salt-sha1",
        "right-salt-sha1",
        "right-salt-other-key",
        "untimed-right-salt",
    ],
)
def test_state_signed_under_another_salt_key_or_digest_is_ignored(
    clock: Clock, app: FastAPI, how: str
) -> None:
    jar = login(app, clock)
    store = app.user_middleware[0].kwargs["store"]
    victim = store.state_codec.loads(jar["_auth_state"])  # the victim's own session
    forged = _signed_elsewhere(victim.state_id, clock, ADMIN, victim.binding, victim.access)[how]
    assert_state_ignored(app, jar, auth_state=forged)


def test_csrf_token_offered_as_state_is_ignored(clock: Clock, app: FastAPI) -> None:
    jar = login(app, clock)
    assert_state_ignored(app, jar, auth_state=jar["_auth_csrf"])


def test_another_sessions_state_cookie_does_not_carry_this_sessions_csrf(
    clock: Clock, app: FastAPI
) -> None:
    mine, theirs = login(app, clock), login(app, clock)
    # Their (valid) state with my CSRF header: the CSRF token is bound to the state's sid.
    assert write(app, mine, auth_state=theirs["_auth_state"]).status == 403


def test_tampered_state_is_not_handed_to_the_refresh_callback(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    # Nor does its refresh cookie reach the callback at all: a refresh needs the state
    # cookie of its session (issue 17, item 3).
    jar = login(app, clock, ttl=10)
    forged = _altered(jar["_auth_state"])["signature-of-other-value"]
    clock.advance(20)
    reply = me(app, jar, auth_state=forged)
    assert reply.status == 401
    assert recorder.calls == []


# --- age and keys ---------------------------------------------------------------------------------


def test_state_older_than_state_max_age_is_ignored(clock: Clock, recorder: Recorder) -> None:
    app = security_app(build_store(clock, recorder, state_max_age=100))
    jar = login(app, clock)
    clock.advance(100)
    assert_state_accepted(app, jar)
    clock.advance(1)
    assert_state_ignored(app, jar)


def test_state_stamped_in_the_future_is_ignored(clock: Clock, recorder: Recorder) -> None:
    ahead = Clock(clock() + 3600)
    jar = login(security_app(build_store(ahead, Recorder(ahead))), ahead)
    app = security_app(build_store(clock, recorder))
    jar["_auth"] = make_token(clock)  # a token valid for this app's clock
    assert_state_ignored(app, jar)


def test_state_signed_with_a_removed_key_is_ignored_overlap_key_accepted(clock: Clock) -> None:
    old_app = security_app(build_store(clock, None, secret_key=OLD_KEY))
    overlap_app = security_app(build_store(clock, None, secret_key=[OLD_KEY, NEW_KEY]))
    new_app = security_app(build_store(clock, None, secret_key=NEW_KEY))
    jar = login(old_app, clock)
    assert_state_accepted(old_app, jar)
    # During the overlap, the old key still verifies the state and the CSRF token.
    assert_state_accepted(overlap_app, jar)
    # Once removed, it verifies nothing.
    assert_state_ignored(new_app, jar)
    # What the overlap configuration issues is signed with the new (last) key.
    fresh = login(overlap_app, clock)
    assert_state_accepted(new_app, fresh)
    assert_state_ignored(old_app, fresh)


# --- bound to the session: its refresh token and its access token (issue 17, item 4) -------------


def _session_app(clock: Clock, callback: Any) -> FastAPI:
    return security_app(
        build_store(clock, None, refresh=create_refresh(interval=60, refresh_api_callback=callback))
    )


def test_an_old_state_does_not_pair_with_a_newer_access_token(clock: Clock) -> None:
    # The callback changes the user state without rotating the refresh token (a role taken
    # away). The old state cookie, kept by the user, was bound to the refresh token only, so
    # it still paired with the new access token: role admin again.
    async def demote(param: RefreshParam) -> RefreshResult:
        return RefreshResult(
            is_success=True,
            new_auth_token=make_token(clock, ttl=300),
            new_auth_user_state={"role": "user"},
        )

    app = _session_app(clock, demote)
    old = login(app, clock, ttl=100, user_state=ADMIN)
    clock.advance(50)
    refreshed = me(app, old)
    assert refreshed.json()["user"] == {"role": "user"}
    new = {**old, **written(refreshed)}
    assert new["_auth_refresh"] == "refresh-0"  # not rotated
    assert new["_auth"] != old["_auth"]
    assert me(app, new).json()["user"] == {"role": "user"}
    # The old state with the new access token: not this session's state any more, so no
    # identity (neither the old user state nor the claims in its place).
    assert_state_ignored(app, new, auth_state=old["_auth_state"])


def test_another_sessions_state_and_refresh_do_not_pair_with_someones_access_token(
    clock: Clock, recorder: Recorder
) -> None:
    # Bob's state and refresh cookies with Alice's access token: Alice's claims with Bob's
    # user state (and Bob's CSRF binding) was a session nobody signed in to.
    app = security_app(build_store(clock, recorder))

    alice = login(app, clock, ttl=100, refresh="refresh-alice", user_state={"name": "Alice"})
    bob = login(app, clock, ttl=100, sub="bob", refresh="refresh-bob", user_state={"name": "Bob"})
    mixed = {**bob, "_auth": alice["_auth"], "_auth_type": alice["_auth_type"]}
    assert_state_ignored(app, mixed)
    assert (
        call(
            app, "POST", "/write", [cookie(mixed), (b"x-csrf-token", bob["_auth_csrf"].encode())]
        ).status
        == 403
    )
    # Due for a refresh, the mixed pair is not refreshed either: Bob's refresh token with
    # Alice's (expired) access token is not a session.
    clock.advance(150)
    assert me(app, mixed).status == 401
    assert recorder.calls == []
    # The controls: each session's own cookies refresh as usual.
    assert me(app, bob).json()["user"] == {"name": "Bob"}
    assert [c.refresh_token for c in recorder.calls] == ["refresh-bob"]


def test_a_state_cookie_without_its_access_token_still_carries_the_session_into_a_refresh(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    # The browser drops the access cookie at its Max-Age; the state cookie (bound to the
    # refresh token too) then carries the user state and the session id into the refresh.
    jar = login(app, clock, ttl=100)
    clock.advance(500)
    reply = me(app, {k: v for k, v in jar.items() if k != "_auth"})
    assert reply.status == 200
    assert recorder.calls[0].auth_user_state == STATE
    assert reply.json()["user"] == STATE


def test_a_state_cookie_from_version_0_1_moves_its_session_to_the_new_binding(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    # 0.1.0 bound the state cookie to the refresh token only. Such a cookie still carries
    # its session (nobody is signed out by the upgrade), through a refresh at once, which
    # issues the cookies bound to the access token too; it is never published next to an
    # access token it was not issued with.
    jar = login(app, clock)
    store = app.user_middleware[0].kwargs["store"]
    session = store.state_codec.loads(jar["_auth_state"])
    legacy = _signed_elsewhere(session.state_id, clock, STATE, session.binding, access=None)[
        "control"
    ]
    reply = me(app, jar, auth_state=legacy)
    assert reply.status == 200
    assert reply.json()["user"] == STATE
    assert [c.auth_user_state for c in recorder.calls] == [STATE]
    moved = {**jar, **written(reply)}
    assert store.state_codec.loads(moved["_auth_state"]).access is not None
    assert_state_accepted(app, moved)
    assert len(recorder.calls) == 1
