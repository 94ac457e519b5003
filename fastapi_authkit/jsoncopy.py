"""Cheap private copies of remembered JSON values (claims, user state); pure.

The caches hand the same verified value to many requests; each request must get its own
copy, so a route that edits what it was given cannot change what the next request sees.
:func:`copyable` takes its own copy first (the value it is given usually belongs to a
request already) and keeps it in the most compact form that still copies out in C: a flat
dict or list (the usual claims and user states) is kept as itself, and its own ``copy()``
is the shallow copy; a scalar is handed out as itself; anything with nested lists or
objects is kept as its JSON text and parsed again. Whatever the form, ``.copy()`` on it is
a fresh private copy, at the cost of one C-level call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from itertools import repeat
from sys import intern as _intern
from typing import Any, NamedTuple, Protocol

__all__ = ["Copyable", "Remembered", "copyable", "private_copy", "remember", "share_strings"]

_SCALARS = (str, int, float, bool, type(None))


class Copyable(Protocol):
    """A remembered value: ``copy()`` returns a fresh private copy of it on every call."""

    def copy(self) -> Any: ...


class _Same:
    """A scalar: immutable, so its copy is itself."""

    __slots__ = ("copy",)

    def __init__(self, value: Any) -> None:
        # repeat(value).__next__: a C-level "return value", no Python frame per copy.
        self.copy: Callable[[], Any] = repeat(value).__next__


class _Json:
    """A nested value, kept as its JSON text: each copy is parsed from it."""

    __slots__ = ("copy",)

    def __init__(self, text: str) -> None:
        self.copy: Callable[[], Any] = partial(json.loads, text)


# The usual scalar (no user state): one for every session.
_NONE = _Same(None)


def copyable(value: Any) -> Copyable:
    """``value`` (already JSON data) in the form it is remembered in (see the module
    docstring); ``copyable(value).copy() == value``."""
    if isinstance(value, dict):
        if all(isinstance(v, _SCALARS) for v in value.values()):
            # Keys interned: every remembered claims dict has the same few keys ("sub",
            # "exp"...), which JSON parsing makes anew for each one; one string each is
            # enough, and the copies handed out share them.
            return {_intern(k) if type(k) is str else k: v for k, v in value.items()}
    elif isinstance(value, list):
        if all(isinstance(v, _SCALARS) for v in value):
            return list(value)
    else:
        return _NONE if value is None else _Same(value)
    return _Json(json.dumps(value))


def share_strings(value: Copyable, source: Copyable) -> None:
    """Make each string of ``value`` (a remembered flat dict) that equals ``source``'s under
    the same key that very string: a user state that repeats the token's claims, as
    ``sub``, ``email`` or ``name`` often do, keeps one copy of each. Both are remembered
    values, never handed out themselves, so ``value`` may change in place."""
    if type(value) is not dict or type(source) is not dict:
        return
    for key, item in list(value.items()):
        other = source.get(key)
        if type(item) is str and type(other) is str and other == item:
            value[key] = other


class Remembered(NamedTuple):
    value: Any  # read-only: the remembered value itself, for checks that do not keep it
    copy: Callable[[], Any]  # a fresh private copy of ``value`` on every call


def remember(value: Any) -> Remembered:
    """``value`` (already JSON data) prepared to be copied out many times, with the value
    itself at hand for reading (what a cache that reads its entries keeps)."""
    own = copyable(value)
    return Remembered(own if isinstance(own, dict | list) else own.copy(), own.copy)


def private_copy(value: Any) -> Any:
    """One private copy of ``value`` (JSON data), for a value handed out only a few times
    (a refresh result shared by the requests that waited on it)."""
    return copyable(value).copy()
