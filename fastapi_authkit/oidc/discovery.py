"""OpenID Connect Discovery: the provider's endpoints from ``/.well-known/openid-configuration``.

OIDC Discovery 1.0 §4.3: the document's ``issuer`` must be exactly the issuer it was fetched
for, or an attacker's document could point us at its own keys. The endpoints must be https
(http on loopback, for development and tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, ProviderError
from .http import ProviderHTTP, check_url

__all__ = ["ProviderMetadata", "discover", "discovery_url"]


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the kit uses of a provider's discovery document."""

    issuer: str
    jwks_uri: str
    token_endpoint: str
    authorization_endpoint: str | None = None
    revocation_endpoint: str | None = None
    end_session_endpoint: str | None = None
    introspection_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    # None when the document does not say (both are RECOMMENDED, not required).
    scopes_supported: frozenset[str] | None = None
    prompt_values_supported: frozenset[str] | None = None

    @classmethod
    def from_document(
        cls, document: object, *, issuer: str, allow_http: bool = False
    ) -> ProviderMetadata:
        """Validate a parsed discovery document; raises :class:`ProviderError`."""
        if not isinstance(document, dict):
            raise ProviderError("the discovery document is not a JSON object")
        if document.get("issuer") != issuer:
            raise ProviderError(
                f"the discovery document names issuer {document.get('issuer')!r}, not "
                f"{issuer!r} (OIDC Discovery §4.3 requires them to be identical)"
            )
        urls: dict[str, Any] = {}
        for name in ("jwks_uri", "token_endpoint"):
            if name not in document:
                raise ProviderError(f"the discovery document has no {name}")
        for name in (
            "jwks_uri",
            "token_endpoint",
            "authorization_endpoint",
            "revocation_endpoint",
            "end_session_endpoint",
            "introspection_endpoint",
            "userinfo_endpoint",
        ):
            value = document.get(name)
            if value is None:
                continue
            try:
                urls[name] = check_url(name, value, allow_http=allow_http)
            except ConfigurationError as exc:
                raise ProviderError(f"the discovery document's {exc}") from exc
        return cls(
            issuer=issuer,
            **urls,
            scopes_supported=_strings(document.get("scopes_supported")),
            prompt_values_supported=_strings(document.get("prompt_values_supported")),
        )


def _strings(value: object) -> frozenset[str] | None:
    """A list of strings from the document, or None when it is absent or not one."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return frozenset(value)


def discovery_url(issuer: str) -> str:
    """Where the issuer's discovery document lives (OIDC Discovery §4.1)."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


async def discover(
    issuer: str, *, http: ProviderHTTP, allow_http: bool = False
) -> ProviderMetadata:
    """Fetch and validate ``issuer``'s discovery document; raises :class:`ProviderError`."""
    answer = await http.get(discovery_url(issuer))
    if answer.status != 200:
        raise ProviderError(f"discovery answered HTTP {answer.status}")
    return ProviderMetadata.from_document(answer.body, issuer=issuer, allow_http=allow_http)
