"""The sign-in a client's settings choose: provider tokens as the session, or social sign-in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from ..errors import ConfigurationError
from ..issuer import Issuer
from ..validation import flag, function
from .discovery import ProviderMetadata
from .http import check_url
from .identity import IdentityHook

__all__ = ["UNSET", "Unset", "check_provider_session", "check_social", "explicit_endpoints"]


class Unset:
    """The type of a parameter's "not given" (audience may be given as None)."""


UNSET: Final = Unset()


def explicit_endpoints(
    issuer: str, authorization: str | None, token: str | None, allow_http: bool
) -> ProviderMetadata | None:
    """The provider's endpoints given in place of discovery (an OAuth 2.0 provider without
    OpenID Connect, GitHub-style), or None to discover them."""
    if authorization is None and token is None:
        return None
    if authorization is None or token is None:
        raise ConfigurationError(
            "a provider without discovery needs both authorization_endpoint and "
            "token_endpoint (or neither, to discover them from the issuer)"
        )
    return ProviderMetadata(
        issuer=issuer,
        jwks_uri="",  # no ID token, so no keys: the userinfo answer says who signed in
        token_endpoint=check_url("token_endpoint", token, allow_http=allow_http),
        authorization_endpoint=check_url(
            "authorization_endpoint", authorization, allow_http=allow_http
        ),
    )


def check_provider_session(
    on_identity: object,
    endpoints: ProviderMetadata | None,
    audience: str | Sequence[str] | Unset | None,
    userinfo_endpoint: str | None,
    *,
    fetch_userinfo: bool | None,
) -> str | Sequence[str] | None:
    """The checks of the provider's tokens as the session (no ``session=``): returns the
    audience, which is required."""
    if on_identity is not None:
        raise ConfigurationError(
            "on_identity is the hook of a sign-in into the issuer's sessions: pass "
            "session=issuer (from create_issuer) with it"
        )
    if endpoints is not None or userinfo_endpoint is not None or fetch_userinfo is not None:
        raise ConfigurationError(
            "authorization_endpoint, token_endpoint, userinfo_endpoint and fetch_userinfo "
            "are for a provider "
            "that only says who signed in (session=issuer, on_identity=...); the provider's "
            "tokens as the session are found by discovery from the issuer"
        )
    if isinstance(audience, Unset):
        raise ConfigurationError(
            "audience is required: the aud the provider's access tokens carry (None only if "
            "your provider sets none), or pass session=issuer and on_identity=... to sign "
            "into this app's own sessions instead"
        )
    return audience


def check_social(
    session: object,
    on_identity: IdentityHook | None,
    *,
    scope: str,
    userinfo_endpoint: str | None,
    fetch_userinfo: bool | None,
    explicit: bool,
    conflicting: Mapping[str, bool],
) -> IdentityHook:
    """The checks of a social sign-in (``session=``): returns the hook."""
    if not isinstance(session, Issuer):
        raise ConfigurationError("session must be the issuer from create_issuer(...)")
    if on_identity is None:
        raise ConfigurationError(
            "session= needs on_identity=: the function that maps the provider's "
            "ProviderIdentity to AppUser(subject, user_state=...) (or None to refuse)"
        )
    function("on_identity", on_identity)
    given = sorted(name for name, is_given in conflicting.items() if is_given)
    if given:
        raise ConfigurationError(
            f"{', '.join(given)} configure the provider's tokens as the session, but "
            "session= makes the issuer's tokens the session (the provider only says who "
            "signed in): drop them, or drop session= and on_identity="
        )
    openid = "openid" in scope.split()
    if explicit and openid:
        raise ConfigurationError(
            "scope asks for openid but the endpoints are given: an OpenID Connect provider "
            "is found by discovery (drop authorization_endpoint and token_endpoint); a "
            "plain OAuth 2.0 provider is asked without openid"
        )
    if explicit and userinfo_endpoint is None:
        raise ConfigurationError(
            "a provider without OpenID Connect says who signed in only at its user API: "
            "pass userinfo_endpoint= (GitHub's is https://api.github.com/user)"
        )
    flag("fetch_userinfo", True if fetch_userinfo is None else fetch_userinfo)
    if fetch_userinfo is False and userinfo_endpoint is not None:
        raise ConfigurationError(
            "fetch_userinfo=False, but userinfo_endpoint= is given"
            + (
                ": a provider without OpenID Connect says who signed in only there (drop "
                "fetch_userinfo)"
                if explicit
                else ": drop one of them"
            )
        )
    if not openid and userinfo_endpoint is None:
        raise ConfigurationError(
            "without openid in scope the provider sends no ID token: add openid to scope, "
            "or pass userinfo_endpoint="
        )
    return on_identity
