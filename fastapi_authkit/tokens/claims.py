"""A JWT's text and claims checked without its key: size, UTF-8 JSON, finite numbers; pure."""

from __future__ import annotations

import json
from typing import Any, Final

import jwt
from jwt.utils import base64url_decode

from ..errors import TokenError
from ..validation import is_number

__all__ = ["MAX_TOKEN_BYTES", "require_utf8_json_objects", "unverified_expiry"]

# A token bigger than this is refused before any base64 or JSON work: no legitimate access
# token comes close, and it bounds the cost of hostile input.
MAX_TOKEN_BYTES: Final = 8192


def require_utf8_json_objects(token: str) -> None:
    """RFC 7519 §7.2: the header and claims are UTF-8 JSON objects. Python's json module
    would also accept UTF-16/32 and a byte-order mark; refuse them before PyJWT parses."""
    for segment in token.split(".", 2)[:2]:
        raw = base64url_decode(segment)
        raw.decode("utf-8")  # strict: raises on anything else
        # UTF-16/32 text without a BOM is valid UTF-8 byte-wise but full of NULs, which JSON
        # never has outside an escape; json.loads would sniff it and decode it anyway.
        if b"\x00" in raw or raw.lstrip(b" \t\r\n")[:1] != b"{":
            raise TokenError("JWT header and payload must be UTF-8 JSON objects")
        # A \u escape can spell half of a surrogate pair, which is no Unicode text: no UTF-8
        # response could carry it (a `sub` returned as the user would make every response of
        # the session a 500). Only text with escapes can hold one, so only that is checked.
        if b"\\u" in raw and not _is_unicode(json.loads(raw)):
            raise TokenError("JWT header and payload must not hold lone surrogates")


def _is_unicode(value: Any) -> bool:
    """Whether every string in the JSON value ``value`` encodes to UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unverified_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT *without* verifying it, or None for opaque or odd tokens.

    Used only to size a refresh cookie's Max-Age (the kit has no key for refresh tokens);
    never for an authentication decision.
    """
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except Exception:
        return None
    exp: Any = claims.get("exp")
    return float(exp) if is_number(exp) else None
