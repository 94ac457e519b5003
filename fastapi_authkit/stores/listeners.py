"""Who to tell when this process learns that session families were revoked.

The stores call :meth:`RevocationListeners.notify` whenever this process learns of a
revocation (a pub/sub message, a store read, or a revocation it made itself); the
middleware's registry of open connections listens, to end the connections of those
sessions. Listeners are held weakly: a registry (one per middleware) goes when its app goes.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

__all__ = ["RevocationListener", "RevocationListeners"]

logger = logging.getLogger("fastapi_authkit")

RevocationListener = Callable[[tuple[str, ...]], None]


class RevocationListeners:
    """Bound methods to call with each batch of revoked family ids (held weakly)."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[weakref.WeakMethod[RevocationListener]] = []

    def add(self, listener: RevocationListener) -> None:
        """Call the bound method ``listener`` from now on, while its object lives."""
        self._listeners = [ref for ref in self._listeners if ref() is not None]
        self._listeners.append(weakref.WeakMethod(listener))

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def notify(self, family_ids: tuple[str, ...]) -> None:
        for ref in self._listeners:
            listener = ref()
            if listener is not None:
                try:
                    listener(family_ids)
                except Exception:  # a listener's bug must not undo a revocation
                    logger.exception("revocation listener failed")
