"""Which way a store's refreshes go: :class:`RefreshRoute`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .refreshconfig import RefreshConfig
from .source import Rotate
from .stores.base import SessionStore

__all__ = ["RefreshRoute"]


class RefreshRoute:
    """The collaborators a refresh goes through: ``config`` (the app's callback and its
    settings), ``rotation`` (the token source's own, used instead of the callback) and
    ``shared`` (the store where refreshes in several processes meet, also where a sign-in
    transaction is used once).

    ``create_store`` fixes them, and the middleware reads them at each refresh; the one
    supported change is :meth:`replaced`, for a block, which is how the test kit
    (:mod:`fastapi_authkit.testing`) makes refreshes or the store fail in an app that is
    already running. The rest of the configuration is immutable.
    """

    __slots__ = ("config", "rotation", "shared")

    def __init__(
        self, config: RefreshConfig | None, rotation: Rotate | None, shared: SessionStore | None
    ) -> None:
        self.config = config
        self.rotation = rotation
        self.shared = shared

    def __repr__(self) -> str:
        return (
            f"RefreshRoute(config={self.config!r}, rotation={self.rotation is not None}, "
            f"shared={type(self.shared).__name__ if self.shared is not None else None})"
        )

    @contextmanager
    def replaced(self, **changes: Any) -> Iterator[None]:
        """Within the block, the route with ``changes`` (any of ``config``, ``rotation``,
        ``shared``); what it was is back on exit, also when blocks nest."""
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise TypeError(f"RefreshRoute has no {', '.join(sorted(unknown))}")
        saved = {name: getattr(self, name) for name in changes}
        for name, value in changes.items():
            setattr(self, name, value)
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(self, name, value)
