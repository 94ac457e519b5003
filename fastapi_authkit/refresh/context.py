"""What a refresh uses of the configuration: :class:`RefreshContext`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..notices import Notices
from ..session import CookieWriter
from ..tokens import TokenVerifier

__all__ = ["RefreshContext"]


@dataclass(frozen=True, slots=True)
class RefreshContext:
    """The parts of the configuration a refresh works with, built once by the middleware:
    ``verifier`` checks the new access token, ``writer`` writes its cookies, ``clock`` dates
    them and ``notices`` counts a streak of failures."""

    verifier: TokenVerifier
    writer: CookieWriter
    clock: Callable[[], float]
    notices: Notices
