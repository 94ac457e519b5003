"""Token ids and sealed blobs: how the stores avoid holding plaintext tokens.

A token's id is an HMAC-SHA256 of the token under a fixed label, so ids for different
purposes never coincide. A sealed blob is AES-256-GCM under a key derived from the token
(another label), so reading it requires the token itself. AES-GCM comes from
``cryptography``; hand-written cryptography is not an option.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["open_sealed", "seal", "token_id"]

_NONCE_BYTES = 12


def token_id(token: str, purpose: str) -> str:
    """A stable, non-reversible id for ``token`` in one ``purpose``."""
    return hmac.new(
        f"fastapi-authkit.id.{purpose}".encode(), token.encode(), hashlib.sha256
    ).hexdigest()


def _key(token: str) -> bytes:
    return hmac.new(b"fastapi-authkit.seal", token.encode(), hashlib.sha256).digest()


def seal(token: str, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` so that only a holder of ``token`` can read it."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(_key(token)).encrypt(nonce, plaintext, None)


def open_sealed(token: str, blob: bytes) -> bytes | None:
    """The plaintext, or None when ``blob`` was not sealed for ``token`` or was altered."""
    if len(blob) <= _NONCE_BYTES:
        return None
    try:
        return AESGCM(_key(token)).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], None)
    except InvalidTag:
        return None
