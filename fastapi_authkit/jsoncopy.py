"""Cheap private copies of remembered JSON values (claims, user state); pure.

The caches hand the same verified value to many requests; each request must get its own
copy, so a route that edits what it was given cannot change what the next request sees.
:func:`remember` takes its own copy first (the value it is given usually belongs to a
request already), then prepares a copier: flat values (the usual claims and user states)
are copied shallowly; anything with nested lists or objects is parsed again from its JSON
text. The copier is a C-level callable (a bound ``dict.copy``, a ``partial`` of
``json.loads``...), so a copy on the hot path costs no Python frame.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from itertools import repeat
from sys import intern as _intern
from typing import Any, NamedTuple

__all__ = ["Remembered", "private_copy", "remember"]

_SCALARS = (str, int, float, bool, type(None))


class Remembered(NamedTuple):
    value: Any  # read-only: the remembered value itself, for checks that do not keep it
    copy: Callable[[], Any]  # a fresh private copy of ``value`` on every call


def remember(value: Any) -> Remembered:
    """Prepare ``value`` (already JSON data) to be copied out many times."""
    if isinstance(value, dict):
        if all(isinstance(v, _SCALARS) for v in value.values()):
            # Keys interned: every remembered claims dict has the same few keys ("sub",
            # "exp"...), which JSON parsing makes anew for each one; one string each is
            # enough, and the copies handed out share them.
            own: dict[str, Any] = {_intern(k) if type(k) is str else k: v for k, v in value.items()}
            return Remembered(own, own.copy)
    elif isinstance(value, list):
        if all(isinstance(v, _SCALARS) for v in value):
            items = list(value)
            return Remembered(items, items.copy)
    else:
        # A scalar is immutable: hand out the value itself (repeat(...).__next__ is a
        # C-level "return value").
        return Remembered(value, repeat(value).__next__)
    text = json.dumps(value)
    return Remembered(json.loads(text), partial(json.loads, text))


def private_copy(value: Any) -> Any:
    """One private copy of ``value`` (JSON data), for a value handed out only a few times
    (a refresh result shared by the requests that waited on it)."""
    return remember(value).copy()
