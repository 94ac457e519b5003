"""``create_refresh``: when and how the middleware refreshes access tokens, validated."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .callback import RefreshCallback, RevokeCallback
from .errors import ConfigurationError
from .source import TokenSource
from .validation import function, seconds

__all__ = ["RefreshConfig", "check_grace", "create_refresh", "issuer_refresh"]


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

    A callback object with a ``revoke(refresh_token)`` method (sync or async; the OIDC
    refresh grant has one) is also the revocation hook: ``sign_out`` calls it with the
    session's refresh token, within ``timeout``, to end the session at the auth server
    (RFC 7009) as well.

    Args:
        interval: Seconds before the access token's ``exp`` at which it is refreshed (an
            expired token is refreshed too while a refresh cookie is present).
        refresh_api_callback: ``async (RefreshParam) -> RefreshResult``; sync callables run
            in a worker thread.
        timeout: Seconds the callback may take before the refresh counts as a transient
            failure.
        grace_period: Seconds during which a request still carrying the refresh token that
            was just used (a browser's requests already in flight) receives the same new
            cookies instead of calling the callback again (with the built-in issuer's
            ``refresh`` as the callback, at most the issuer's ``grace``: ``create_store``
            checks).

    Raises:
        ConfigurationError: A value that cannot work, named.
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


def check_grace(refresh: RefreshConfig) -> None:
    """With a token source's own refresh as the callback (``issuer.refresh``), the
    middleware's grace period must not outlast the source's: within it, a rotated-out refresh
    token gets the remembered result without the source being asked, so a longer window
    would answer for the issuer where the issuer says "reuse". A shorter one is safe: the
    issuer answers those replays itself."""
    callback, grace_period = refresh.refresh_api_callback, refresh.grace_period
    source = getattr(callback, "__self__", None)
    if (
        getattr(callback, "__name__", None) == "refresh"
        and isinstance(source, TokenSource)
        and grace_period > source.grace
    ):
        raise ConfigurationError(
            f"create_refresh(grace_period={grace_period:g}) is longer than the "
            f"issuer's grace ({source.grace:g} s) whose refresh it calls: pass "
            f"grace_period={source.grace:g} (or less), or leave refresh= out with token_issuer"
        )


def issuer_refresh(issuer: TokenSource) -> RefreshConfig:
    """The refresh through the built-in issuer's own rotation: in the last fifth of the
    token's life, at most a minute before ``exp``; a plain ``sign_out(request)`` revokes
    the session in the issuer's store too."""
    refresh = create_refresh(
        interval=min(60.0, issuer.access_ttl / 5),
        refresh_api_callback=issuer.refresh,
        grace_period=issuer.grace,
    )
    return replace(refresh, revoke=issuer.revoke)
