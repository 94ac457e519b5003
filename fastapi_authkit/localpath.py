"""Whether a string is a path on this site, safe to send as a redirect's ``Location``; pure.

A redirect to a path taken from configuration (``require_auth(fallback_path=...)``) or from
the request (the OIDC sign-in's ``next``) must never leave the site. Browsers are lenient
readers of ``Location``: ``//host`` is another host, a backslash counts as a slash
(``/\\host``), and tabs and newlines are dropped before the URL is parsed (``/\\t/host``),
so all three name ``host``. Control characters and spaces are refused too: nothing legitimate
needs them unencoded, and CR/LF in a header value is an injection.
"""

from __future__ import annotations

from typing import TypeGuard

__all__ = ["is_local_path"]


def is_local_path(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a ``str`` holding an absolute path on this site (``/login``,
    ``/a?b=c``), with no backslash, space or control character."""
    return (
        isinstance(value, str)
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and not any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)
    )
