"""CsrfSigner and StateCodec: the two values signed with secret_key, and what voids them."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from itsdangerous import Signer, URLSafeSerializer, URLSafeTimedSerializer

from fastapi_authkit import create_store
from fastapi_authkit.csrf import CsrfSigner
from fastapi_authkit.errors import UserStateError
from fastapi_authkit.userstate import SessionData, StateCodec, binding_of

from tests.support.clock import T0, Clock
from tests.support.tokens import SECRET_KEY, TOKEN_KEY

BOUND = "the-session-refresh-token"

OLD = b"old-secret-key-0123456789abcdef0123456789"
NEW = b"new-secret-key-0123456789abcdef0123456789"
MAX_AGE = 3600


def codec(clock: Clock, keys: tuple[bytes, ...] = (NEW,), max_age: int = MAX_AGE) -> StateCodec:
    return StateCodec(keys, max_age=max_age, clock=clock)


def flip(value: str, index: int) -> str:
    """``value`` with the character at ``index`` replaced by a different one."""
    replacement = "A" if value[index] != "A" else "B"
    return value[:index] + replacement + value[index + 1 :]


# --- CsrfSigner ------------------------------------------------------------------------------


def test_csrf_token_is_stable_per_session() -> None:
    assert CsrfSigner([NEW]).token_for("sid-1") == CsrfSigner([NEW]).token_for("sid-1")


def test_csrf_token_differs_per_session_and_per_key() -> None:
    tokens = {
        CsrfSigner([NEW]).token_for("sid-1"),
        CsrfSigner([NEW]).token_for("sid-2"),
        CsrfSigner([OLD]).token_for("sid-1"),
    }
    assert len(tokens) == 3


def test_csrf_token_is_ascii_and_cookie_safe() -> None:
    token = CsrfSigner([NEW]).token_for("sid-1")
    assert token.isascii()
    assert token.replace("-", "").replace("_", "").isalnum()
    assert len(token) >= 43  # a full SHA-256 HMAC, base64url


def test_csrf_token_verifies_for_its_own_session_only() -> None:
    signer = CsrfSigner([NEW])
    token = signer.token_for("sid-1")
    assert signer.verify("sid-1", token) is True
    assert signer.verify("sid-2", token) is False
    assert signer.verify("sid-1" + " ", token) is False


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "!!!!", "a" * 43, "sid-1", "ünïcödé", "\udcff", "x" * 10_000, "=" * 44],
)
def test_garbage_or_non_ascii_csrf_token_fails(token: str) -> None:
    assert CsrfSigner([NEW]).verify("sid-1", token) is False


def test_truncated_or_altered_csrf_token_fails() -> None:
    signer = CsrfSigner([NEW])
    token = signer.token_for("sid-1")
    assert signer.verify("sid-1", token[:-1]) is False
    assert signer.verify("sid-1", flip(token, 0)) is False
    assert signer.verify("sid-1", token + "A") is False


def test_csrf_token_is_not_a_plain_signature_of_the_sid() -> None:
    # The salt separates it from other itsdangerous signatures made with the same key.
    plain = Signer(NEW, digest_method=hashlib.sha256).get_signature("sid-1").decode()
    signer = CsrfSigner([NEW])
    assert signer.token_for("sid-1") != plain
    assert signer.verify("sid-1", plain) is False


def test_old_key_still_verifies_after_rotation_and_fails_once_removed() -> None:
    before = CsrfSigner([OLD]).token_for("sid-1")
    rotated = CsrfSigner([OLD, NEW])

    assert rotated.verify("sid-1", before) is True
    assert rotated.token_for("sid-1") == CsrfSigner([NEW]).token_for("sid-1")  # newest signs
    assert rotated.token_for("sid-1") != before
    assert CsrfSigner([NEW]).verify("sid-1", before) is False


def test_store_csrf_signer_uses_the_secret_keys() -> None:
    rotated = create_store(secret_key=[OLD, NEW], token_key=TOKEN_KEY).csrf
    assert rotated.verify("sid-1", CsrfSigner([OLD]).token_for("sid-1")) is True
    single = create_store(secret_key=SECRET_KEY, token_key=TOKEN_KEY).csrf
    assert single.verify("sid-1", CsrfSigner([OLD]).token_for("sid-1")) is False


# --- StateCodec -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_state",
    [
        None,
        {"name": "Alice", "roles": ["admin", "user"], "n": 3, "ok": True},
        ["a", 1, 2.5],
        "plain string",
        0,
        {"unicode": "ünïcödé ☃", "nested": {"deep": [{"x": None}]}},
    ],
)
def test_state_round_trips(clock: Clock, user_state: Any) -> None:
    c = codec(clock)
    value = c.dumps("sid-1", user_state, BOUND)
    assert c.loads(value) == SessionData("sid-1", user_state, binding_of(BOUND), ())


def test_state_value_is_cookie_safe(clock: Clock) -> None:
    value = codec(clock).dumps("sid-1", {"name": 'Ünïcödé; "quoted", spaced'}, BOUND)
    assert value.isascii()
    assert not set(value) & set(' ;,"\\')


def test_tampered_signature_is_ignored(clock: Clock) -> None:
    c = codec(clock)
    value = c.dumps("sid-1", {"name": "alice"}, BOUND)
    assert c.loads(flip(value, -1)) is None
    assert c.loads(flip(value, -10)) is None


def test_tampered_payload_is_ignored(clock: Clock) -> None:
    c = codec(clock)
    genuine = c.dumps("sid-1", {"role": "user"}, BOUND)
    forged_payload = c.dumps("sid-1", {"role": "admin"}, BOUND).split(".")[0]
    forged = ".".join([forged_payload, *genuine.split(".")[1:]])
    assert forged != genuine
    assert c.loads(forged) is None


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_value_is_ignored(clock: Clock, cut: int) -> None:
    c = codec(clock)
    value = c.dumps("sid-1", {"name": "alice"}, BOUND)
    assert c.loads(value[:-cut]) is None
    assert c.loads(value[cut:]) is None


@pytest.mark.parametrize(
    "value",
    ["", ".", "..", "a.b.c", "not-a-state", "ünïcödé.x.y", "\udcff", "x" * 10_000, "a" * 50],
)
def test_garbage_state_is_ignored(clock: Clock, value: str) -> None:
    assert codec(clock).loads(value) is None


def test_csrf_token_offered_as_state_is_ignored(clock: Clock) -> None:
    c = codec(clock)
    csrf = CsrfSigner([NEW])
    genuine = c.dumps("sid-1", None, BOUND)
    # A CSRF token is an HMAC of whatever "sid" it was made for; make it for the state's
    # signed part, so that only the salt tells the two purposes apart.
    body = genuine.rsplit(".", 1)[0]
    forged = f"{body}.{csrf.token_for(body)}"

    assert c.loads(genuine) == SessionData("sid-1", None, binding_of(BOUND), ())
    assert forged != genuine
    assert c.loads(forged) is None
    assert c.loads(csrf.token_for("sid-1")) is None


def test_state_signed_with_another_salt_is_ignored(clock: Clock) -> None:
    payload = {"s": "sid-1", "u": {"name": "mallory"}, "b": binding_of(BOUND)}
    signer_kwargs = {"digest_method": hashlib.sha256}
    foreign = [
        URLSafeTimedSerializer(NEW, salt="app.session", signer_kwargs=signer_kwargs),
        URLSafeTimedSerializer(NEW, signer_kwargs=signer_kwargs),  # itsdangerous' default salt
        URLSafeTimedSerializer(NEW, salt="fastapi-authkit.csrf", signer_kwargs=signer_kwargs),
    ]
    c = codec(clock)
    for serializer in foreign:
        assert c.loads(serializer.dumps(payload)) is None


def test_state_without_timestamp_or_with_another_digest_is_ignored(clock: Clock) -> None:
    payload = {"s": "sid-1", "u": None, "b": binding_of(BOUND)}
    salt = "fastapi-authkit.state"
    untimed = URLSafeSerializer(NEW, salt=salt, signer_kwargs={"digest_method": hashlib.sha256})
    sha1 = URLSafeTimedSerializer(NEW, salt=salt)  # itsdangerous' default digest
    c = codec(clock)
    assert c.loads(untimed.dumps(payload)) is None
    assert c.loads(sha1.dumps(payload)) is None


def test_state_older_than_max_age_is_ignored(clock: Clock) -> None:
    c = codec(clock, max_age=60)
    value = c.dumps("sid-1", {"name": "alice"}, BOUND)

    clock.advance(60)
    assert c.loads(value) == SessionData("sid-1", {"name": "alice"}, binding_of(BOUND), ())
    clock.advance(1)
    assert c.loads(value) is None


def test_state_signed_at_a_given_time_is_what_the_clock_would_sign_then(clock: Clock) -> None:
    """A refresh's cookies are written at the time of the process that rotated, by every
    process handing the same pair out: the bytes must not depend on who writes them."""
    c = codec(clock, max_age=60)
    now = clock()
    at_now = c.dumps("sid-1", {"name": "alice"}, BOUND)
    clock.advance(30)
    assert c.dumps("sid-1", {"name": "alice"}, BOUND, now=now) == at_now
    assert c.dumps("sid-1", {"name": "alice"}, BOUND) != at_now  # the clock's own time
    clock.advance(31)
    assert c.loads(c.dumps("sid-1", {"name": "alice"}, BOUND, now=now)) is None  # and its age


def test_store_state_codec_uses_state_max_age(clock: Clock) -> None:
    s = create_store(
        secret_key=SECRET_KEY, token_key=TOKEN_KEY, clock=clock, state_max_age=10, leeway=0
    )
    value = s.state_codec.dumps("sid-1", None, BOUND)
    clock.advance(10)
    assert s.state_codec.loads(value) is not None
    clock.advance(1)
    assert s.state_codec.loads(value) is None


def test_state_with_a_timestamp_in_the_future_is_ignored(clock: Clock) -> None:
    c = codec(clock)
    clock.advance(120)
    from_the_future = c.dumps("sid-1", None, BOUND)
    clock.now = T0

    assert c.loads(from_the_future) is None
    clock.now = T0 + 120
    assert c.loads(from_the_future) == SessionData("sid-1", None, binding_of(BOUND), ())


def test_overlap_key_is_accepted_and_a_removed_key_is_not(clock: Clock) -> None:
    signed_with_old = codec(clock, (OLD,)).dumps("sid-1", {"v": 1}, BOUND)
    rotated = codec(clock, (OLD, NEW))

    assert rotated.loads(signed_with_old) == SessionData("sid-1", {"v": 1}, binding_of(BOUND), ())
    assert codec(clock, (NEW,)).loads(signed_with_old) is None
    # The newest key signs, so dropping the old key later keeps new values valid.
    assert codec(clock, (NEW,)).loads(rotated.dumps("sid-2", None, BOUND)) == SessionData(
        "sid-2", None, binding_of(BOUND), ()
    )


def test_payload_not_in_the_state_shape_is_ignored(clock: Clock) -> None:
    # Correctly signed (same keys, salt, digest) but not {"s": <str>, "u": ..., "b": <str>}.
    c = codec(clock)
    assert c.loads(c.dumps(123, None, BOUND)) is None  # type: ignore[arg-type]
    assert c.loads(c.dumps(None, None, BOUND)) is None  # type: ignore[arg-type]
    serializer = c._serializer
    assert c.loads(serializer.dumps({"s": "sid-1", "u": None})) is None  # no binding
    assert c.loads(serializer.dumps({"s": "sid-1", "u": None, "b": 5})) is None
    b = binding_of(BOUND)
    for access in ("x", [1], {"a": "b"}, None):
        assert c.loads(serializer.dumps({"s": "sid-1", "u": None, "b": b, "a": access})) is None
    assert c.loads(serializer.dumps({"s": "sid-1", "u": None, "b": b, "a": [], "x": 1})) is None
    # Version 0.1.0's shape (no access-token bindings) still reads, marked as such.
    legacy = c.loads(serializer.dumps({"s": "sid-1", "u": None, "b": b}))
    assert legacy == SessionData("sid-1", None, b, None)


class Unserializable:
    pass


def _circular() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


@pytest.mark.parametrize(
    "user_state",
    [Unserializable(), {1, 2}, b"bytes", {"when": object()}, _circular(), {("a", "b"): 1}],
    ids=["object", "set", "bytes", "nested object", "circular", "tuple key"],
)
def test_non_json_serializable_user_state_raises_user_state_error(
    clock: Clock, user_state: Any
) -> None:
    with pytest.raises(UserStateError):
        codec(clock).dumps("sid-1", user_state, BOUND)
