"""``create_store``'s options checked one at a time, each into the form the configuration holds."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Final, Literal

from .cookies import CookieNames, is_token
from .errors import ConfigurationError
from .secretvalue import reveal
from .validation import flag

__all__ = [
    "AuthType",
    "Credential",
    "canonical_auth_type",
    "cookie_names",
    "csrf_exempt",
    "secret_keys",
]

# A kind of credential a request can carry: the kit's own cookie session, an
# ``Authorization: Bearer`` header, or an access cookie another service (an auth gateway on
# a parent domain) sets.
Credential = Literal["cookie", "header", "gateway"]
# What create_store(auth_type=...) takes: one kind, or a combination (in any order).
AuthType = Credential | tuple[Credential, ...]

_MIN_SECRET_BYTES: Final = 32
# RFC 6265 path-value: any CHAR except CTLs or ';'.
_PATH: Final = re.compile(r"/[\x20-\x3a\x3c-\x7e]*")
_DOMAIN: Final = re.compile(
    r"\.?[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
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


def canonical_auth_type(value: object) -> tuple[AuthType, frozenset[Credential]]:
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


def secret_keys(secret_key: object) -> tuple[bytes, ...]:
    """``secret_key`` (one key or a list, maybe wrapped) as bytes, oldest first."""
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


def cookie_names(
    auth_name: str, domain: object, secure: object, samesite: object, path: object
) -> CookieNames:
    """The cookies' names, once their attributes are each valid and together what browsers
    accept for a name with that prefix."""
    if samesite not in ("lax", "strict", "none"):
        raise ConfigurationError("cookie_samesite must be 'lax', 'strict' or 'none'")
    flag("cookie_secure", secure)
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        # Anything else would be copied into every Set-Cookie header (header injection).
        raise ConfigurationError(
            "cookie_path must be an absolute path of printable ASCII without ';'"
        )
    if domain is not None and (not isinstance(domain, str) or not _DOMAIN.fullmatch(domain)):
        raise ConfigurationError("cookie_domain must be a host name (letters, digits, '.', '-')")
    if samesite == "none" and not secure:
        raise ConfigurationError("cookie_samesite='none' requires cookie_secure=True")
    names = CookieNames.from_prefix(auth_name)
    # RFC 6265bis matches the prefixes case-insensitively, and so do browsers.
    if auth_name.lower().startswith("__host-") and (
        not secure or domain is not None or path != "/"
    ):
        raise ConfigurationError(
            "a '__Host-' cookie name requires cookie_secure=True, cookie_path='/' "
            "and no cookie_domain (RFC 6265bis §4.1.3.2)"
        )
    if auth_name.lower().startswith("__secure-") and not secure:
        raise ConfigurationError("a '__Secure-' cookie name requires cookie_secure=True")
    return names


def csrf_exempt(paths: Collection[str], header_name: str) -> frozenset[str]:
    """The CSRF options: the exempt paths as a set, and a header name a request can carry."""
    if isinstance(paths, str):
        raise ConfigurationError("csrf_exempt_paths must be a collection of paths, not a str")
    exempt = frozenset(paths)  # once: an iterator can be read only once
    if not all(isinstance(p, str) and p.startswith("/") for p in exempt):
        raise ConfigurationError("csrf_exempt_paths must be a collection of absolute paths")
    if not is_token(header_name):
        # Anything else could never arrive on a request, and every unsafe request would fail.
        raise ConfigurationError(f"csrf_header_name {header_name!r} is not a header name")
    return exempt
