"""The sign-in transaction: what the login route must remember until the provider sends the
browser back (``state``, ``nonce``, the PKCE verifier, the return path), sealed in a cookie
that only this server can have written or can read, and a memory of the ones already used.

Sealed, not merely signed: AES-256-GCM (``cryptography``) under a key derived from the
store's ``secret_key``, with the cookie's name as associated data. A cookie this server never
issued, or one altered, opens to nothing; the browser (and a script, or a log that catches
the URL) cannot read the PKCE verifier. The issue time is inside the seal, so an old cookie
is refused whatever ``Max-Age`` the browser was given.

Single use: :class:`UsedStates` remembers the ``state`` of every callback that reached the
token endpoint until its transaction would have expired anyway, bounded in size. It is per
process; the sign-in routes also claim the state in the store's ``shared_store`` when one
is configured, which makes it hold across workers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..validation import is_number

__all__ = ["TRANSACTION_SECONDS", "Transaction", "TransactionCodec", "UsedStates"]

# Long enough to type a password and pass a second factor; short enough to be useless later.
TRANSACTION_SECONDS: Final = 600
_NONCE_BYTES: Final = 12
_KEY_LABEL: Final = b"fastapi-authkit.oidc-transaction"
# A sealed transaction is ~250 bytes; anything much longer is not one of ours.
_MAX_SEALED_CHARS: Final = 2048


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Transaction:
    """One sign-in in progress."""

    state: str
    nonce: str
    verifier: str
    next: str
    issued_at: float

    @classmethod
    def start(cls, next_path: str, now: float) -> Transaction:
        return cls(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),  # RFC 7636 §4.1: 43-128 characters
            next=next_path,
            issued_at=now,
        )

    @property
    def challenge(self) -> str:
        """The PKCE S256 code challenge of the verifier."""
        return _b64(hashlib.sha256(self.verifier.encode()).digest())

    @property
    def expires_at(self) -> float:
        return self.issued_at + TRANSACTION_SECONDS


class TransactionCodec:
    """Seal and open transactions with keys derived from ``secret_keys`` (the store's
    ``secret_key``, newest last: the newest seals, all open)."""

    __slots__ = ("_keys",)

    def __init__(self, secret_keys: Sequence[bytes]) -> None:
        # A key of its own: a transaction cookie can never pass for a state or CSRF cookie.
        self._keys = tuple(
            AESGCM(hmac.new(key, _KEY_LABEL, hashlib.sha256).digest())
            for key in reversed(secret_keys)
        )

    def seal(self, transaction: Transaction, name: str) -> str:
        plain = json.dumps(
            [
                transaction.state,
                transaction.nonce,
                transaction.verifier,
                transaction.next,
                transaction.issued_at,
            ],
            separators=(",", ":"),
        ).encode()
        nonce = os.urandom(_NONCE_BYTES)
        return _b64(nonce + self._keys[0].encrypt(nonce, plain, name.encode()))

    def open(self, value: str | None, name: str, now: float) -> Transaction | None:
        """The transaction sealed in ``value`` for the cookie ``name``, or None when it is
        absent, not sealed here, altered, or older than :data:`TRANSACTION_SECONDS`."""
        if not value or len(value) > _MAX_SEALED_CHARS:
            return None
        try:
            blob = _unb64(value)
        except ValueError:
            return None
        if len(blob) <= _NONCE_BYTES:
            return None
        for key in self._keys:
            try:
                plain = key.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], name.encode())
            except InvalidTag:
                continue
            return _transaction(plain, now)
        return None


def _transaction(plain: bytes, now: float) -> Transaction | None:
    try:
        state, nonce, verifier, next_path, issued_at = json.loads(plain)
    except (ValueError, TypeError):
        return None
    if not all(isinstance(v, str) and v for v in (state, nonce, verifier, next_path)):
        return None
    if not is_number(issued_at):
        return None
    transaction = Transaction(state, nonce, verifier, next_path, float(issued_at))
    # A minute of clock step backwards is tolerated; an expired one is not.
    if not transaction.issued_at - 60 <= now < transaction.expires_at:
        return None
    return transaction


class UsedStates:
    """The ``state`` values of this process's callbacks, each until its transaction would
    have expired: a used ``state`` never reaches the token endpoint again.

    Bounded: past ``max_entries`` the oldest is forgotten (a replay of it would still need
    its cookie, which the browser deleted, and its code, which the provider refuses twice).
    """

    __slots__ = ("_max", "_used")

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._used: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._used)

    def claim(self, state: str, expires_at: float, now: float) -> bool:
        """True the first time ``state`` is claimed (until ``expires_at``), False after."""
        used = self._used
        while used:
            oldest, until = next(iter(used.items()))
            if until > now and len(used) < self._max:
                break
            del used[oldest]
        key = state_key(state)
        if key in used and used[key] > now:
            return False
        used[key] = expires_at
        return True


def state_key(state: str) -> str:
    """What is remembered of a ``state`` (a hash: the memory and the shared store hold no
    value an attacker could use)."""
    return hashlib.sha256(state.encode()).hexdigest()
