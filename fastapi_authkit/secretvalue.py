"""Secrets handed over wrapped: pydantic's ``SecretStr``/``SecretBytes`` (or anything with
a ``get_secret_value()`` method) and Starlette's ``Secret``, unwrapped where the kit takes
a secret. Duck-typed: importing the kit never imports pydantic."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["SecretValue", "reveal"]


@runtime_checkable
class SecretValue(Protocol):
    """A wrapped secret: pydantic's ``SecretStr`` and ``SecretBytes`` are ones."""

    def get_secret_value(self) -> Any: ...


def reveal(value: Any) -> Any:
    """The secret inside a wrapper (pydantic's ``SecretStr``/``SecretBytes``, Starlette's
    ``Secret``), else ``value`` unchanged."""
    get = getattr(type(value), "get_secret_value", None)
    if callable(get):
        return value.get_secret_value()
    if type(value).__module__ == "starlette.datastructures" and type(value).__name__ == "Secret":
        return str(value)  # Starlette's Secret hides its value in repr, and str() reveals it
    return value
