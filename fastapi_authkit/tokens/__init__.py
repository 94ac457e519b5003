"""Access tokens: verified against keys (:class:`TokenVerifier`), and checked without one.

* :mod:`.verifier`: the :class:`TokenVerifier` and its token cache;
* :mod:`.keys`: keys and their algorithms, and the key-set and introspection protocols;
* :mod:`.claims`: a JWT's size, encoding and numeric claims, checked without a key.
"""

from __future__ import annotations

from .claims import MAX_TOKEN_BYTES, unverified_expiry
from .keys import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    KeySource,
    OpaqueTokenSource,
    check_algorithm,
    describe_key,
    prepare_key,
)
from .verifier import EXTERNAL_LEEWAY, TokenVerifier

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "EXTERNAL_LEEWAY",
    "HMAC_ALGORITHMS",
    "MAX_TOKEN_BYTES",
    "KeySource",
    "OpaqueTokenSource",
    "TokenVerifier",
    "check_algorithm",
    "describe_key",
    "prepare_key",
    "unverified_expiry",
]
