"""Cheap private copies of remembered JSON values (claims, user state); pure.

The caches hand the same verified value to many requests; each request must get its own
copy, so a route that edits what it was given cannot change what the next request sees.
Flat values (the usual claims and user states) are copied shallowly; anything with nested
lists or objects is parsed again from its JSON text.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

__all__ = ["Remembered", "remember"]

_SCALARS = (str, int, float, bool, type(None))


class Remembered(NamedTuple):
    value: Any
    nested_json: str | None  # the JSON text when a shallow copy would share inner objects

    def copy(self) -> Any:
        value = self.value
        if self.nested_json is not None:
            return json.loads(self.nested_json)
        if isinstance(value, dict):
            return dict(value)
        if isinstance(value, list):
            return list(value)
        return value  # a scalar is immutable


def remember(value: Any) -> Remembered:
    """Prepare ``value`` (already JSON data) to be copied out many times."""
    if isinstance(value, dict):
        flat = all(isinstance(v, _SCALARS) for v in value.values())
    elif isinstance(value, list):
        flat = all(isinstance(v, _SCALARS) for v in value)
    else:
        flat = True
    return Remembered(value, None if flat else json.dumps(value))
