"""``create_store`` and ``create_refresh``: validated, immutable configuration.

Everything that can be checked is checked here, once, so that a misconfiguration is a
:class:`ConfigurationError` at start-up rather than a 500 at the first request; everything
that can be precomputed (cookie names and attributes, prepared keys, signers) is.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from .callback import RefreshCallback, RevokeCallback
from .cookies import CookieNames, CookiePolicy, SameSite, is_token
from .csrf import CsrfSigner
from .errors import ConfigurationError
from .events import EventHook, Events
from .notices import Notices
from .origins import validate_origins
from .secretvalue import SecretValue, reveal
from .source import Rotate, TokenSource
from .stores.base import SessionStore
from .stores.listeners import RevocationListeners
from .tokens import EXTERNAL_LEEWAY, TokenVerifier
from .userstate import StateCodec
from .validation import flag, function, is_int, seconds, whole_seconds

__all__ = [
    "AuthStore",
    "AuthType",
    "Credential",
    "RefreshConfig",
    "create_refresh",
    "create_store",
]

# A kind of credential a request can carry: the kit's own cookie session, an
# ``Authorization: Bearer`` header, or an access cookie another service (an auth gateway on
# a parent domain) sets.
Credential = Literal["cookie", "header", "gateway"]
# What create_store(auth_type=...) takes: one kind, or a combination (in any order).
AuthType = Credential | tuple[Credential, ...]
UserLoader = Callable[[dict[str, Any], Any], Any]
SessionCheck = Callable[[dict[str, Any]], Awaitable[bool]]
SessionKnown = Callable[[str, float], "bool | None"]
# Which HTTP responses of a session end with it: event streams, every response, none.
EndStreams = Literal["event-stream", "all", "none"]

_MIN_SECRET_BYTES: Final = 32
# RFC 6265 path-value: any CHAR except CTLs or ';'.
_PATH: Final = re.compile(r"/[\x20-\x3a\x3c-\x7e]*")
_DOMAIN: Final = re.compile(
    r"\.?[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_DAY: Final = 24 * 3600


@dataclass(frozen=True, slots=True)
class RefreshConfig:
    """How and when the middleware refreshes access tokens. Build with :func:`create_refresh`."""

    interval: float
    refresh_api_callback: RefreshCallback = field(repr=False)
    timeout: float
    grace_period: float
    # The callback object's revoke(refresh_token) method, when it has one: sign_out calls
    # it (RFC 7009 revocation at the auth server).
    revoke: RevokeCallback | None = field(default=None, repr=False)


def create_refresh(
    *,
    interval: float,
    refresh_api_callback: RefreshCallback,
    timeout: float = 10.0,
    grace_period: float = 10.0,
) -> RefreshConfig:
    """Configure server-side refresh.

    ``interval``: seconds before the access token's ``exp`` at which it is refreshed (an
    expired token is refreshed too while a refresh cookie is present).
    ``refresh_api_callback``: ``async (RefreshParam) -> RefreshResult``; sync callables run
    in a worker thread. ``timeout``: seconds the callback may take before the refresh counts
    as a transient failure. ``grace_period``: seconds during which a request still carrying
    the refresh token that was just used (a browser's requests already in flight) receives
    the same new cookies instead of calling the callback again (with the built-in issuer's
    ``refresh`` as the callback, at most the issuer's ``grace``: ``create_store`` checks).

    A callback object with a ``revoke(refresh_token)`` method (sync or async; the OIDC
    refresh grant has one) is also the revocation hook: ``sign_out`` calls it with the
    session's refresh token, within ``timeout``, to end the session at the auth server
    (RFC 7009) as well.
    """
    function("refresh_api_callback", refresh_api_callback)
    revoke = getattr(refresh_api_callback, "revoke", None)
    if revoke is not None and not callable(revoke):
        raise ConfigurationError("refresh_api_callback.revoke must be callable (the hook)")
    return RefreshConfig(
        interval=seconds("interval", interval),
        refresh_api_callback=refresh_api_callback,
        timeout=seconds("timeout", timeout, positive=True),
        grace_period=seconds("grace_period", grace_period),
        revoke=revoke,
    )


def _check_grace(refresh: RefreshConfig) -> None:
    """With a token source's own refresh as the callback (``issuer.refresh``), the
    middleware's grace period must not outlast the source's: within it, a rotated-out refresh
    token gets the remembered result without the source being asked, so a longer window
    would answer for the issuer where the issuer says "reuse". A shorter one is safe: the
    issuer answers those replays itself."""
    callback = refresh.refresh_api_callback
    source = getattr(callback, "__self__", None)
    if (
        getattr(callback, "__name__", None) == "refresh"
        and isinstance(source, TokenSource)
        and refresh.grace_period > source.grace
    ):
        raise ConfigurationError(
            f"create_refresh(grace_period={refresh.grace_period:g}) is longer than the "
            f"issuer's grace ({source.grace:g} s) whose refresh it calls: pass "
            f"grace_period={source.grace:g} (or less), or leave refresh= out with token_issuer"
        )


# The combinations auth_type may name, in their canonical order (how AuthStore.auth_type
# holds them). "cookie" and "gateway" both read the access cookie, one only with its
# session's state cookie, the other without: they never go together.
_COMBINATIONS: Final[dict[frozenset[str], AuthType]] = {
    frozenset({"cookie"}): "cookie",
    frozenset({"header"}): "header",
    frozenset({"gateway"}): "gateway",
    frozenset({"cookie", "header"}): ("cookie", "header"),
    frozenset({"gateway", "header"}): ("gateway", "header"),
}


def _auth_type(value: object) -> tuple[AuthType, frozenset[Credential]]:
    """``auth_type`` in its canonical form, and the set of its credential kinds."""
    kinds = [value] if isinstance(value, str) else value
    if isinstance(kinds, list | tuple | set | frozenset) and all(isinstance(k, str) for k in kinds):
        found = frozenset(kinds)
        canonical = _COMBINATIONS.get(found)
        if canonical is not None and len(found) == len(kinds):
            return canonical, found
    raise ConfigurationError(
        "auth_type must be 'cookie', 'header', 'gateway', ('cookie', 'header') or "
        f"('gateway', 'header'), got {value!r}"
    )


def _secret_keys(secret_key: object) -> tuple[bytes, ...]:
    secret_key = reveal(secret_key)
    raw_keys = [secret_key] if isinstance(secret_key, str | bytes) else secret_key
    if not isinstance(raw_keys, Sequence) or not raw_keys:
        raise ConfigurationError("secret_key must be str, bytes, or a non-empty list of them")
    keys = []
    for key in map(reveal, raw_keys):
        if not isinstance(key, str | bytes):
            raise ConfigurationError("secret_key must be str, bytes, or a list of them")
        raw = key.encode() if isinstance(key, str) else key
        if len(raw) < _MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"secret_key must be at least {_MIN_SECRET_BYTES} bytes "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        keys.append(raw)
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """How open connections (WebSockets, streamed responses) end with their session: see
    :func:`create_store`'s ``close_code``, ``close_at_token_expiry``, ``end_streams`` and
    ``live_check_interval``."""

    close_code: int = 1008
    close_at_token_expiry: float | None = None
    end_streams: EndStreams = "event-stream"
    check_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class AuthStore:
    """The kit's immutable configuration, handed to :class:`AuthKitMiddleware`.

    Build it with :func:`create_store`; the fields after ``clock`` are precomputed from the
    others and hold no secrets in their ``repr``.
    """

    auth_name: str
    auth_type: AuthType
    # The kinds of credential auth_type names (what the reader and sign_in look at).
    credentials: frozenset[Credential]
    cookie_domain: str | None
    cookie_secure: bool
    cookie_samesite: SameSite
    cookie_path: str
    refresh: RefreshConfig | None
    user_loader: UserLoader | None = field(repr=False)
    csrf_exempt_paths: frozenset[str]
    csrf_header_name: str
    allowed_origins: frozenset[str]
    state_max_age: int
    refresh_max_age: int
    retry_after: int
    debug: bool
    clock: Callable[[], float] = field(repr=False)
    names: CookieNames = field(repr=False)
    policy: CookiePolicy = field(repr=False)
    verifier: TokenVerifier = field(repr=False)
    state_codec: StateCodec = field(repr=False)
    csrf: CsrfSigner = field(repr=False)
    csrf_header: bytes = field(repr=False)
    # ``secret_key`` as bytes, newest last: what keys the kit's other sealed cookies (the
    # OIDC sign-in transaction) are derived from.
    secret_keys: tuple[bytes, ...] = field(repr=False)
    # Asked on every authenticated request whether the session is still live (the issuer's
    # revocation check); None when tokens are trusted until exp. ``session_known`` answers
    # the same without I/O when it can (True/False), None when ``session_check`` must ask.
    session_check: SessionCheck | None = field(repr=False)
    session_known: SessionKnown | None = field(repr=False)
    # Where concurrent refreshes in different processes meet (cross-process single flight).
    shared_store: SessionStore | None = field(repr=False)
    # The token source's own rotation, when the refresh callback is the source's: one store
    # call per refresh, exactly-once by itself (no cross-process flight needed).
    rotation: Rotate | None = field(repr=False)
    # The built-in issuer when the app is its own auth server (create_store(token_issuer=)).
    token_issuer: TokenSource | None = field(repr=False)
    # Advice logged once, and the refresh failure streak: the one mutable part, per store.
    notices: Notices = field(repr=False, compare=False)
    # The on_event hook and its queue (None without one: no event is ever built then).
    events: Events | None = field(default=None, repr=False, compare=False)
    # How open connections end with their session, and who tells this process of
    # revocations as they happen (the issuer's store; None: the periodic check only).
    live: LiveOptions = field(default_factory=LiveOptions)
    revocation_listeners: RevocationListeners | None = field(
        default=None, repr=False, compare=False
    )


def create_store(
    *,
    secret_key: str | bytes | SecretValue | Sequence[str | bytes | SecretValue],
    token_key: object | Mapping[str, object] = None,
    algorithms: Sequence[str] | None = None,
    audience: str | Sequence[str] | None = None,
    issuer: str | None = None,
    leeway: float | None = None,
    token_typ: str | None = None,
    max_token_lifetime: float = _DAY,
    verified_token_cache: int = 100_000,
    auth_name: str = "_auth",
    auth_type: AuthType = "cookie",
    cookie_domain: str | None = None,
    cookie_secure: bool = True,
    cookie_samesite: SameSite = "lax",
    cookie_path: str = "/",
    refresh: RefreshConfig | None = None,
    token_issuer: TokenSource | None = None,
    shared_store: SessionStore | None = None,
    user_loader: UserLoader | None = None,
    csrf_exempt_paths: Collection[str] = (),
    csrf_header_name: str = "X-CSRF-Token",
    allowed_origins: Collection[str] = (),
    state_max_age: int = 30 * _DAY,
    refresh_max_age: int = 14 * _DAY,
    retry_after: int = 5,
    debug: bool = False,
    on_event: EventHook | None = None,
    close_code: int = 1008,
    close_at_token_expiry: float | None = None,
    end_streams: EndStreams = "event-stream",
    live_check_interval: float = 1.0,
    clock: Callable[[], float] = time.time,
) -> AuthStore:
    """Validate the configuration and return the immutable :class:`AuthStore`.

    ``secret_key`` signs the user-state and CSRF cookies (a list rotates keys: the last one
    signs, all verify). Every secret (``secret_key``, ``token_key``) may also be given
    wrapped, as pydantic's ``SecretStr``/``SecretBytes`` or Starlette's ``Secret``.
    ``token_key`` verifies access tokens: one key (HMAC secret, or a public key for
    RS/ES/PS/EdDSA), or a mapping of key id to key for rotation, selected by
    the token's ``kid``. ``algorithms`` is the allowlist; the token's own ``alg`` is never
    trusted beyond it. ``audience``/``issuer`` are required and compared exactly when set;
    ``leeway`` (seconds) absorbs clock skew on ``exp``/``nbf``/``iat``: by default 10 s for
    tokens from an external auth server (its clock is not ours), 0 with ``token_issuer``
    (the tokens are minted here). ``token_typ``
    requires that ``typ`` header (e.g. ``"at+jwt"``, RFC 9068). ``max_token_lifetime``
    refuses tokens whose ``exp`` lies further ahead than that (default one day).
    ``verified_token_cache`` bounds how many verified tokens (and state cookies, and the
    outcomes of signed-in Cookie headers) are remembered so that each is verified once, not
    on every request (0 disables; time claims and ages are still checked on every request,
    revocation too).

    Cookie flags come from ``cookie_*``. A name starting ``__Host-`` requires
    ``cookie_secure=True``, ``cookie_path="/"`` and no domain; ``__Secure-`` requires
    ``cookie_secure=True``; ``cookie_samesite="none"`` requires ``cookie_secure=True``.

    ``auth_type`` says which credentials identify a request: ``"cookie"`` (the session
    ``sign_in`` starts: an access cookie with its signed state cookie), ``"header"``
    (``Authorization: Bearer``, for API clients: no cookies, no CSRF, no refresh),
    ``"gateway"`` (an access cookie that another service, an auth gateway on a parent
    domain, sets: verified, no state cookie, no refresh, no ``sign_in``; unsafe methods need
    a same-origin ``Origin`` or ``Sec-Fetch-Site``; it trusts whoever can set cookies for
    this host), or one of them with the header: ``("cookie", "header")`` or
    ``("gateway", "header")``, where a valid bearer header wins and any invalid credential
    counts as absent (see ``AuthState.credential``). ``user_loader(claims, user_state)``
    (sync or async) turns a verified identity into the object ``current_user`` returns.
    ``csrf_exempt_paths`` are exact route paths, without the ``root_path`` (a login form
    posted without JavaScript): they skip the CSRF token check, not the ``Origin`` and
    ``Sec-Fetch-Site`` checks, which run there even without cookies.
    ``allowed_origins`` are origins (``https://app.example.com``) besides the app's own that
    may send cookie-authenticated unsafe requests and WebSocket handshakes.
    ``token_issuer`` (from :func:`~fastapi_authkit.create_issuer`) makes the app its own auth
    server: its key verifies tokens, it is the refresh callback unless ``refresh`` is given,
    and every authenticated request checks that the session was not revoked (answered by the
    store's view in this process while it is provably current, else by the store, failing
    closed with 503 when the store is down). ``shared_store`` (a ``RedisStore``) makes
    concurrent refreshes of one refresh token in different processes share one callback
    call; with ``token_issuer`` it defaults to the issuer's store when that is not a
    ``MemoryStore`` and the callback is not the issuer's own (whose rotation is exactly-once
    across processes by itself, in one round trip).
    ``state_max_age`` bounds the state cookie's age; ``refresh_max_age`` is the refresh
    cookie's Max-Age when neither the callback nor the token itself says. ``retry_after`` is
    sent with 503 answers while the refresh callback is failing. ``debug`` logs every
    decision on the ``fastapi_authkit`` logger (DEBUG level); when that logger has no level
    of its own and no handler would print its records (the case under uvicorn), the
    middleware sets it to DEBUG and gives it a handler printing to stderr (never the root
    logger's). ``on_event`` receives the audit events (signed in, refreshed, refresh
    failed, session ended, reuse detected, signed out, request refused, revoked session,
    store unavailable: see :mod:`fastapi_authkit.events`), a plain function called inline
    or an ``async`` one called from a bounded queue; nothing it does can fail or delay a
    request.

    Open connections end with their session (with ``token_issuer``): a WebSocket whose
    session is revoked (sign-out, sign out everywhere, reuse detected, a revoked session,
    the absolute lifetime) is closed with ``close_code`` (1008, policy violation, or an
    app's own 4000-4999) within the view's ``max_lag`` when the revocation message
    arrives, else within ``live_check_interval`` seconds (the periodic check, which asks
    the store only when the view is not current, and never closes anything because the
    store cannot answer). ``close_at_token_expiry`` (seconds, off by default) also closes
    a WebSocket that long after its access token's ``exp``, so that the client reconnects
    and the handshake refreshes. ``end_streams`` says which responses to GET requests end
    the same way: ``"event-stream"`` (server-sent events, the default), ``"all"`` (any
    response, ``StreamingResponse`` included) or ``"none"``. ``clock`` returns the
    current Unix time and exists for tests.
    """
    keys = _secret_keys(secret_key)
    token_key = reveal(token_key)
    if isinstance(token_key, Mapping):
        token_key = {kid: reveal(key) for kid, key in token_key.items()}
    auth_type, credentials = _auth_type(auth_type)
    if cookie_samesite not in ("lax", "strict", "none"):
        raise ConfigurationError("cookie_samesite must be 'lax', 'strict' or 'none'")
    flag("cookie_secure", cookie_secure)
    if not isinstance(cookie_path, str) or not _PATH.fullmatch(cookie_path):
        # Anything else would be copied into every Set-Cookie header (header injection).
        raise ConfigurationError(
            "cookie_path must be an absolute path of printable ASCII without ';'"
        )
    if cookie_domain is not None and (
        not isinstance(cookie_domain, str) or not _DOMAIN.fullmatch(cookie_domain)
    ):
        raise ConfigurationError("cookie_domain must be a host name (letters, digits, '.', '-')")
    if cookie_samesite == "none" and not cookie_secure:
        raise ConfigurationError("cookie_samesite='none' requires cookie_secure=True")
    names = CookieNames.from_prefix(auth_name)
    # RFC 6265bis matches the prefixes case-insensitively, and so do browsers.
    if auth_name.lower().startswith("__host-") and (
        not cookie_secure or cookie_domain is not None or cookie_path != "/"
    ):
        raise ConfigurationError(
            "a '__Host-' cookie name requires cookie_secure=True, cookie_path='/' "
            "and no cookie_domain (RFC 6265bis §4.1.3.2)"
        )
    if auth_name.lower().startswith("__secure-") and not cookie_secure:
        raise ConfigurationError("a '__Secure-' cookie name requires cookie_secure=True")
    if refresh is not None and not isinstance(refresh, RefreshConfig):
        raise ConfigurationError("refresh must come from create_refresh(...)")
    if "gateway" in credentials and refresh is not None:
        raise ConfigurationError(
            "auth_type='gateway' only verifies the access cookie the gateway sets; the "
            "gateway refreshes it, so refresh=... cannot apply"
        )
    if "cookie" not in credentials and refresh is not None:
        raise ConfigurationError(
            "auth_type='header' has no refresh cookie, so refresh=... cannot apply; "
            "API clients refresh with their own token endpoint"
        )
    if user_loader is not None:
        function("user_loader", user_loader)
    if isinstance(csrf_exempt_paths, str):
        raise ConfigurationError("csrf_exempt_paths must be a collection of paths, not a str")
    exempt = frozenset(csrf_exempt_paths)  # once: an iterator can be read only once
    if not all(isinstance(p, str) and p.startswith("/") for p in exempt):
        raise ConfigurationError("csrf_exempt_paths must be a collection of absolute paths")
    if not is_token(csrf_header_name):
        # Anything else could never arrive on a request, and every unsafe request would fail.
        raise ConfigurationError(f"csrf_header_name {csrf_header_name!r} is not a header name")
    whole_seconds("state_max_age", state_max_age)
    whole_seconds("refresh_max_age", refresh_max_age)
    whole_seconds("retry_after", retry_after)
    function("clock", clock)
    if on_event is not None and not callable(on_event):
        raise ConfigurationError("on_event must be callable: hook(event), plain or async")
    live = _live_options(close_code, close_at_token_expiry, end_streams, live_check_interval)
    notices = Notices(clock)
    session_check: SessionCheck | None = None
    session_known: SessionKnown | None = None
    rotation: Rotate | None = None
    if token_issuer is not None:
        if not isinstance(token_issuer, TokenSource):
            raise ConfigurationError("token_issuer must come from create_issuer(...)")
        if token_key is not None or algorithms is not None or issuer is not None or audience:
            raise ConfigurationError(
                "with token_issuer, the token key, algorithm, issuer and audience come from "
                "the issuer; do not pass token_key/algorithms/issuer/audience"
            )
        if auth_type != "cookie":
            raise ConfigurationError(
                f"token_issuer works with auth_type='cookie', not {auth_type!r}"
            )
        token_key, algorithms = token_issuer.token_key, (token_issuer.algorithm,)
        if token_typ is not None:
            raise ConfigurationError(
                f"with token_issuer, token_typ is the issuer's own {token_issuer.token_typ!r}"
            )
        issuer, audience = token_issuer.issuer, token_issuer.audience
        token_typ = token_issuer.token_typ
        max_token_lifetime = max(max_token_lifetime, token_issuer.access_ttl + 1)
        session_check, session_known = token_issuer.is_active, token_issuer.known_active
        if refresh is not None:
            notices.interval_beyond_lifetime(refresh.interval, token_issuer.access_ttl)
        else:
            refresh = replace(
                create_refresh(
                    # Refresh in the last fifth of the token's life, at most a minute before
                    # exp.
                    interval=min(60.0, token_issuer.access_ttl / 5),
                    refresh_api_callback=token_issuer.refresh,
                    grace_period=token_issuer.grace,
                ),
                # So that a plain sign_out(request) revokes the session in the store too.
                revoke=token_issuer.revoke,
            )
        if refresh.refresh_api_callback == token_issuer.refresh:
            rotation = token_issuer.rotate
        elif shared_store is None:
            # A callback of the app's own around the issuer: the generic cross-process flight.
            shared_store = token_issuer.shared_store
    if refresh is not None:
        _check_grace(refresh)
    if shared_store is not None:
        if not isinstance(shared_store, SessionStore):
            raise ConfigurationError("shared_store must be a SessionStore such as RedisStore")
        if refresh is None:
            raise ConfigurationError("shared_store coordinates refreshes: it needs refresh=...")
    if leeway is None:
        leeway = 0.0 if token_issuer is not None else EXTERNAL_LEEWAY
    verifier = TokenVerifier(
        key=token_key,
        algorithms=algorithms,
        audience=audience,
        issuer=issuer,
        leeway=leeway,
        typ=token_typ,
        max_lifetime=max_token_lifetime,
        cache_size=verified_token_cache,
    )
    return AuthStore(
        auth_name=auth_name,
        auth_type=auth_type,
        credentials=credentials,
        cookie_domain=cookie_domain,
        cookie_secure=cookie_secure,
        cookie_samesite=cookie_samesite,
        cookie_path=cookie_path,
        refresh=refresh,
        user_loader=user_loader,
        csrf_exempt_paths=exempt,
        csrf_header_name=csrf_header_name,
        allowed_origins=validate_origins(allowed_origins),
        state_max_age=state_max_age,
        refresh_max_age=refresh_max_age,
        retry_after=retry_after,
        debug=bool(debug),
        clock=clock,
        names=names,
        policy=CookiePolicy(
            domain=cookie_domain, secure=cookie_secure, samesite=cookie_samesite, path=cookie_path
        ),
        verifier=verifier,
        state_codec=StateCodec(
            keys,
            max_age=state_max_age,
            clock=clock,
            leeway=verifier.leeway,
            cache_size=verified_token_cache,
        ),
        csrf=CsrfSigner(keys),
        csrf_header=csrf_header_name.lower().encode("ascii"),
        secret_keys=keys,
        session_check=session_check,
        session_known=session_known,
        shared_store=shared_store,
        rotation=rotation,
        token_issuer=token_issuer,
        notices=notices,
        events=Events(on_event, clock) if on_event is not None else None,
        live=live,
        revocation_listeners=_revocation_listeners(token_issuer),
    )


def _live_options(
    close_code: object, expiry: object, end_streams: object, interval: object
) -> LiveOptions:
    if not is_int(close_code) or not (close_code == 1008 or 4000 <= close_code <= 4999):
        raise ConfigurationError(
            f"close_code must be 1008 or an application code 4000-4999, got {close_code!r}"
        )
    if end_streams not in ("event-stream", "all", "none"):
        raise ConfigurationError("end_streams must be 'event-stream', 'all' or 'none'")
    return LiveOptions(
        close_code=close_code,
        close_at_token_expiry=None if expiry is None else seconds("close_at_token_expiry", expiry),
        end_streams=end_streams,
        check_interval=seconds("live_check_interval", interval, positive=True),
    )


def _revocation_listeners(source: TokenSource | None) -> RevocationListeners | None:
    watch = getattr(source, "watch_revocations", None)
    listeners = watch() if callable(watch) else None
    return listeners if isinstance(listeners, RevocationListeners) else None
