"""``create_store``: the validated, immutable configuration (with ``create_refresh``'s part).

Everything that can be checked is checked here (and in the option modules it calls), once,
so that a misconfiguration is a :class:`ConfigurationError` at start-up rather than a 500 at
the first request; everything that can be precomputed (cookie names and attributes, prepared
keys, signers) is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .cookies import CookieNames, CookiePolicy, SameSite
from .csrf import CsrfSigner
from .errors import ConfigurationError
from .eventdelivery import SILENT, AuditSink, Events
from .events import EventHook
from .liveoptions import EndStreams, LiveOptions, live_options
from .notices import Notices
from .origins import validate_origins
from .refreshconfig import RefreshConfig, check_grace, create_refresh, issuer_refresh
from .refreshroute import RefreshRoute
from .secretvalue import SecretValue, reveal
from .session import CookieWriter
from .source import Rotate, SessionCheck, SessionKnown, TokenSource
from .storeoptions import (
    AuthType,
    Credential,
    canonical_auth_type,
    cookie_names,
    csrf_exempt,
    secret_keys,
)
from .stores.base import SessionStore
from .stores.listeners import RevocationListeners
from .tokens import EXTERNAL_LEEWAY, TokenVerifier
from .userstate import StateCodec
from .validation import function, whole_seconds

__all__ = ["AuthStore", "AuthType", "Credential", "RefreshConfig", "create_refresh", "create_store"]

UserLoader = Callable[[dict[str, Any], Any], Any]
_DAY: Final = 24 * 3600


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
    cookie_writer: CookieWriter = field(repr=False)
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
    # The three above as the middleware reads them at each refresh (the test kit swaps them).
    refresh_route: RefreshRoute = field(init=False, repr=False, compare=False)
    # The built-in issuer when the app is its own auth server (create_store(token_issuer=)).
    token_issuer: TokenSource | None = field(repr=False)
    # Advice logged once, and the refresh failure streak: the one mutable part, per store.
    notices: Notices = field(repr=False, compare=False)
    # Where audit reports go: the on_event hook and its queue, or SILENT without one (no
    # event is ever built then).
    events: AuditSink = field(default=SILENT, repr=False, compare=False)
    # How open connections end with their session, and who tells this process of
    # revocations as they happen (the issuer's store; None: the periodic check only).
    live: LiveOptions = field(default_factory=LiveOptions)
    revocation_listeners: RevocationListeners | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Derived, so that dataclasses.replace(store, ...) routes refreshes by its own fields.
        route = RefreshRoute(self.refresh, self.rotation, self.shared_store)
        object.__setattr__(self, "refresh_route", route)


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
    verified_token_cache: int = 20_000,
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

    Every secret (``secret_key``, ``token_key``) may also be given wrapped, as pydantic's
    ``SecretStr``/``SecretBytes`` or Starlette's ``Secret``. Open connections end with their
    session (with ``token_issuer``): a WebSocket whose session is revoked (sign-out, sign out
    everywhere, reuse detected, a revoked session, the absolute lifetime) is closed within
    the view's ``max_lag`` when the revocation message arrives, else within
    ``live_check_interval`` (a periodic check that asks the store only when the view is not
    current, and never closes anything because the store cannot answer).

    Args:
        secret_key: Signs the user-state and CSRF cookies; a list rotates keys (the last
            one signs, all verify).
        token_key: Verifies access tokens: one key (HMAC secret, or a public key for
            RS/ES/PS/EdDSA), or a mapping of key id to key for rotation, selected by the
            token's ``kid``.
        algorithms: The allowlist; the token's own ``alg`` is never trusted beyond it.
        audience: Required and compared exactly when set.
        issuer: Required and compared exactly when set.
        leeway: Seconds absorbing clock skew on ``exp``/``nbf``/``iat``: by default 10 for
            tokens from an external auth server (its clock is not ours), 0 with
            ``token_issuer`` (the tokens are minted here).
        token_typ: Requires that ``typ`` header (e.g. ``"at+jwt"``, RFC 9068).
        max_token_lifetime: Refuses tokens whose ``exp`` lies further ahead than that many
            seconds (default one day).
        verified_token_cache: How many verified tokens (and state cookies, and the outcomes
            of signed-in Cookie headers) are remembered so that each is verified once, not
            on every request (0 disables; time claims and ages are still checked on every
            request, revocation too). Default 20,000: a worker's caches stay well under
            64 MiB (docs/performance.md measures what a remembered session costs).
        auth_name: The cookies' name prefix. A name starting ``__Host-`` requires
            ``cookie_secure=True``, ``cookie_path="/"`` and no domain; ``__Secure-``
            requires ``cookie_secure=True``.
        auth_type: Which credentials identify a request: ``"cookie"`` (the session
            ``sign_in`` starts: an access cookie with its signed state cookie),
            ``"header"`` (``Authorization: Bearer``, for API clients: no cookies, no CSRF,
            no refresh), ``"gateway"`` (an access cookie that another service, an auth
            gateway on a parent domain, sets: verified, no state cookie, no refresh, no
            ``sign_in``; unsafe methods need a same-origin ``Origin`` or
            ``Sec-Fetch-Site``; it trusts whoever can set cookies for this host), or one of
            them with the header: ``("cookie", "header")`` or ``("gateway", "header")``,
            where a valid bearer header wins and any invalid credential counts as absent
            (see ``AuthState.credential``).
        cookie_domain: The cookies' ``Domain`` attribute (None: this host only).
        cookie_secure: The ``Secure`` flag.
        cookie_samesite: ``"lax"``, ``"strict"`` or ``"none"`` (which requires
            ``cookie_secure=True``).
        cookie_path: The cookies' ``Path`` attribute.
        refresh: Server-side refresh, from :func:`create_refresh`.
        token_issuer: Makes the app its own auth server (from
            :func:`~fastapi_authkit.create_issuer`): its key verifies tokens, it is the
            refresh callback unless ``refresh`` is given, and every authenticated request
            checks that the session was not revoked (answered by the store's view in this
            process while it is provably current, else by the store, failing closed with
            503 when the store is down). With ``auth_type="header"`` or ``("cookie",
            "header")`` its access tokens are accepted as ``Authorization: Bearer`` too,
            under the same check; such clients get and refresh them at the app's token
            route (``issuer.issue_tokens``, ``issuer.token_endpoint``).
        shared_store: A ``RedisStore`` through which concurrent refreshes of one refresh
            token in different processes share one callback call; with ``token_issuer`` it
            defaults to the issuer's store when that is not a ``MemoryStore`` and the
            callback is not the issuer's own (whose rotation is exactly-once across
            processes by itself, in one round trip).
        user_loader: ``user_loader(claims, user_state)`` (sync or async) turns a verified
            identity into the object ``current_user`` returns.
        csrf_exempt_paths: Exact route paths, without the ``root_path`` (a login form
            posted without JavaScript): they skip the CSRF token check, not the ``Origin``
            and ``Sec-Fetch-Site`` checks, which run there even without cookies.
        csrf_header_name: The header that carries the CSRF token.
        allowed_origins: Origins (``https://app.example.com``) besides the app's own that
            may send cookie-authenticated unsafe requests and WebSocket handshakes.
        state_max_age: Bounds the state cookie's age (seconds).
        refresh_max_age: The refresh cookie's Max-Age when neither the callback nor the
            token itself says (seconds); whoever says, never beyond ``state_max_age``.
        retry_after: Sent with 503 answers while the refresh callback is failing.
        debug: Logs every decision on the ``fastapi_authkit`` logger (DEBUG level); when
            that logger has no level of its own and no handler would print its records (the
            case under uvicorn), the middleware sets it to DEBUG and gives it a handler
            printing to stderr (never the root logger's).
        on_event: Receives the audit events (signed in, refreshed, refresh failed, session
            ended, reuse detected, signed out, request refused, revoked session, store
            unavailable: see :mod:`fastapi_authkit.events`): a plain function called inline
            or an ``async`` one called from a bounded queue; nothing it does can fail or
            delay a request.
        close_code: The WebSocket close code of a session that ended: 1008 (policy
            violation) or an app's own 4000-4999.
        close_at_token_expiry: Seconds after its access token's ``exp`` at which a
            WebSocket is closed too, so that the client reconnects and the handshake
            refreshes (None, the default: never).
        end_streams: Which responses to GET requests end the same way:
            ``"event-stream"`` (server-sent events), ``"all"`` (any response,
            ``StreamingResponse`` included) or ``"none"``.
        live_check_interval: Seconds between the periodic checks of open connections.
        clock: Returns the current Unix time; exists for tests.

    Raises:
        ConfigurationError: A value or a combination that cannot work, named.
    """
    keys = secret_keys(secret_key)
    token_key = reveal(token_key)
    if isinstance(token_key, Mapping):
        token_key = {kid: reveal(key) for kid, key in token_key.items()}
    auth_type, credentials = canonical_auth_type(auth_type)
    names = cookie_names(auth_name, cookie_domain, cookie_secure, cookie_samesite, cookie_path)
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
    exempt = csrf_exempt(csrf_exempt_paths, csrf_header_name)
    whole_seconds("state_max_age", state_max_age)
    whole_seconds("refresh_max_age", refresh_max_age)
    whole_seconds("retry_after", retry_after)
    function("clock", clock)
    if on_event is not None and not callable(on_event):
        raise ConfigurationError("on_event must be callable: hook(event), plain or async")
    live = live_options(close_code, close_at_token_expiry, end_streams, live_check_interval)
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
        if "gateway" in credentials:
            raise ConfigurationError(
                f"token_issuer makes this app the auth server, and auth_type={auth_type!r} "
                "reads an access cookie that an auth gateway sets; use auth_type='cookie', "
                "'header' or ('cookie', 'header') with token_issuer"
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
        elif "cookie" in credentials:
            refresh = issuer_refresh(token_issuer)
        # (No refresh with auth_type='header': bearer clients refresh at the app's token
        # route, issuer.token_endpoint.)
        if refresh is not None and refresh.refresh_api_callback == token_issuer.refresh:
            rotation = token_issuer.rotate
        elif refresh is not None and shared_store is None:
            # A callback of the app's own around the issuer: the generic cross-process flight.
            shared_store = token_issuer.shared_store
    if refresh is not None:
        check_grace(refresh)
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
    writer = CookieWriter(
        names=names,
        policy=CookiePolicy(
            domain=cookie_domain, secure=cookie_secure, samesite=cookie_samesite, path=cookie_path
        ),
        state_codec=StateCodec(
            keys,
            max_age=state_max_age,
            clock=clock,
            leeway=verifier.leeway,
            cache_size=verified_token_cache,
        ),
        csrf=CsrfSigner(keys),
        leeway=verifier.leeway,
        state_max_age=state_max_age,
        refresh_max_age=refresh_max_age,
        refresh_interval=refresh.interval if refresh is not None else None,
        notices=notices,
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
        policy=writer.policy,
        verifier=verifier,
        state_codec=writer.state_codec,
        csrf=writer.csrf,
        csrf_header=csrf_header_name.lower().encode("ascii"),
        cookie_writer=writer,
        secret_keys=keys,
        session_check=session_check,
        session_known=session_known,
        shared_store=shared_store,
        rotation=rotation,
        token_issuer=token_issuer,
        notices=notices,
        events=Events(on_event, clock) if on_event is not None else SILENT,
        live=live,
        revocation_listeners=_revocation_listeners(token_issuer),
    )


def _revocation_listeners(source: TokenSource | None) -> RevocationListeners | None:
    watch = getattr(source, "watch_revocations", None)
    listeners = watch() if callable(watch) else None
    return listeners if isinstance(listeners, RevocationListeners) else None
