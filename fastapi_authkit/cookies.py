"""Read the auth cookies from request headers and build Set-Cookie values; pure.

The reader only looks for the kit's own cookie names and is strict where Starlette's
general-purpose parser is lenient: a duplicated auth cookie is ambiguous and counts as
absent (Starlette keeps the last one, which lets a sibling subdomain shadow ours), and so
does a quoted, oversized or non-ASCII value. Nothing here decodes a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from .errors import ConfigurationError, CookieError, CookieTooLargeError

__all__ = [
    "CACHED_HEADER_BYTES",
    "COOKIE_MAX_BYTES",
    "CookieNames",
    "CookiePolicy",
    "cookie_header",
    "is_token",
    "parse_cookie_header",
    "read_cookies",
    "session_tokens",
]

# RFC 6265bis §5.6: browsers ignore a cookie whose name plus value exceeds 4096 bytes.
COOKIE_MAX_BYTES: Final = 4096
# RFC 6265 cookie-octet: US-ASCII without CTLs, whitespace, DQUOTE, comma, semicolon, backslash.
_COOKIE_VALUE: Final = re.compile(rb"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+")
# RFC 9110 token, the grammar of a cookie name.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

SameSite = Literal["lax", "strict", "none"]


def is_token(value: object) -> bool:
    """Whether ``value`` is an RFC 9110 token: the grammar of cookie and header names."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class CookieNames:
    """The five cookie names derived from ``auth_name`` (React Auth Kit's scheme)."""

    access: str
    type: str
    state: str
    refresh: str
    csrf: str
    wanted: frozenset[bytes] = field(repr=False)

    @classmethod
    def from_prefix(cls, auth_name: str) -> CookieNames:
        if not is_token(auth_name):
            raise ConfigurationError(f"auth_name {auth_name!r} is not a valid cookie name")
        names = (
            auth_name,
            f"{auth_name}_type",
            f"{auth_name}_state",
            f"{auth_name}_refresh",
            f"{auth_name}_csrf",
        )
        return cls(*names, wanted=frozenset(n.encode() for n in names))

    def all(self) -> tuple[str, str, str, str, str]:
        return (self.access, self.type, self.state, self.refresh, self.csrf)


def session_tokens(
    headers: Iterable[tuple[bytes, bytes]], names: CookieNames
) -> tuple[str | None, str | None]:
    """The access and refresh tokens the request's cookies hold (None for one absent)."""
    cookies = read_cookies(headers, names.wanted)
    return cookies.get(names.access), cookies.get(names.refresh)


def read_cookies(
    headers: Iterable[tuple[bytes, bytes]], wanted: frozenset[bytes]
) -> Mapping[str, str]:
    """Return the wanted cookies that appear exactly once with a well-formed value.

    The mapping may be shared between requests (a reader remembers it per header value):
    read it, never change it.
    """
    return parse_cookie_header(cookie_header(headers), wanted)


def cookie_header(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The request's Cookie header; HTTP/2 may split it, and the pairs are the same joined.

    Joined once, at the end: adding each header to the result in turn copies it again for
    every header that follows, quadratic in their number (a request may send thousands).
    """
    first: bytes | None = None
    more: list[bytes] | None = None
    for name, value in headers:
        if name == b"cookie":
            if first is None:
                first = value
            elif more is None:
                more = [first, value]
            else:
                more.append(value)
    if more is not None:
        return b"; ".join(more)
    return b"" if first is None else first


# A browser sends the same Cookie header on every request of a session, so a reader may
# remember parsed headers: those up to this size (bounded in count and size).
CACHED_HEADER_BYTES: Final = 4096
_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})


def parse_cookie_header(header: bytes, wanted: frozenset[bytes]) -> Mapping[str, str]:
    """:func:`read_cookies` for an already joined Cookie header."""
    if not header:
        return _EMPTY
    found: dict[bytes, bytes | None] = {}
    for chunk in header.split(b";"):
        name, sep, value = chunk.partition(b"=")
        if not sep:
            continue  # a nameless or valueless chunk names nothing
        name = name.strip(b" \t")
        if name not in wanted:
            continue
        if name in found:
            found[name] = None  # ambiguous: never guess which copy is ours
            continue
        value = value.strip(b" \t")
        if len(name) + len(value) > COOKIE_MAX_BYTES or not _COOKIE_VALUE.fullmatch(value):
            found[name] = None
        else:
            found[name] = value
    # A new dict, typed read-only because the empty answer (_EMPTY) is one shared object.
    return {name.decode(): value.decode() for name, value in found.items() if value is not None}


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """Attributes shared by every auth cookie, and the Set-Cookie values built from them."""

    domain: str | None
    secure: bool
    samesite: SameSite
    path: str
    _suffix: bytes = field(init=False, repr=False)
    _suffix_http_only: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = [f"Path={self.path}"]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.secure:
            parts.append("Secure")
        parts.append(f"SameSite={self.samesite.capitalize()}")
        tail = "; ".join(parts).encode()
        object.__setattr__(self, "_suffix", b"; " + tail)
        object.__setattr__(self, "_suffix_http_only", b"; HttpOnly; " + tail)

    def set(self, name: str, value: str, *, max_age: int | None, http_only: bool = True) -> bytes:
        """A Set-Cookie value; refuses values a browser would drop or mangle. ``max_age``
        None makes a session cookie (no Max-Age, no Expires): the browser drops it when it
        closes."""
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError as exc:
            raise CookieError(f"cookie {name!r}: value must be ASCII") from exc
        if len(name) + len(raw) > COOKIE_MAX_BYTES:
            raise CookieTooLargeError(name, len(name) + len(raw), COOKIE_MAX_BYTES)
        if not _COOKIE_VALUE.fullmatch(raw):
            raise CookieError(f"cookie {name!r}: value holds characters a cookie cannot carry")
        suffix = self._suffix_http_only if http_only else self._suffix
        if max_age is None:
            return b"%s=%s%s" % (name.encode(), raw, suffix)
        return b"%s=%s; Max-Age=%d%s" % (name.encode(), raw, max(0, max_age), suffix)

    def delete(self, name: str, *, http_only: bool = True) -> bytes:
        """A Set-Cookie that deletes ``name``, repeating the attributes it was set with."""
        suffix = self._suffix_http_only if http_only else self._suffix
        return b"%s=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT%s" % (name.encode(), suffix)
