"""Finding the kit's configuration in an app, a middleware stack or a test client."""

from __future__ import annotations

from collections import deque
from typing import Any

from ..config import AuthStore
from ..errors import ConfigurationError
from ..middleware import AuthKitMiddleware

__all__ = ["find_store"]

# Where an ASGI wrapper, a Starlette app or a test client keeps what it wraps.
_INNER = ("app", "_transport", "middleware_stack")


def find_store(target: Any) -> AuthStore:
    """The :class:`~fastapi_authkit.config.AuthStore` that ``target`` runs with: ``target`` is the
    store itself, an app that added :class:`~fastapi_authkit.AuthKitMiddleware` (read from
    ``app.user_middleware``, so before the app has started too), a middleware stack, a
    Starlette ``TestClient`` or an httpx ``AsyncClient`` on an ``ASGITransport``. Raises
    :class:`~fastapi_authkit.ConfigurationError` when there is none."""
    queue: deque[Any] = deque([target])
    seen: set[int] = set()
    while queue:
        node = queue.popleft()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, AuthStore):
            return node
        if isinstance(node, AuthKitMiddleware):
            return node.store
        for middleware in getattr(node, "user_middleware", None) or ():
            cls = getattr(middleware, "cls", None)
            if isinstance(cls, type) and issubclass(cls, AuthKitMiddleware):
                store = getattr(middleware, "kwargs", {}).get("store")
                if isinstance(store, AuthStore):
                    return store
        queue.extend(getattr(node, name, None) for name in _INNER)
    raise ConfigurationError(
        f"no AuthKitMiddleware found in {type(target).__name__}: pass the app (or a client "
        "of it) that runs app.add_middleware(AuthKitMiddleware, store=...)"
    )
