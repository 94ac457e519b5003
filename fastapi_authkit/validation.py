"""Checks of configuration values and arguments, each raising an error that names the value."""

from __future__ import annotations

import math
import sys
from typing import Final, TypeGuard

from .errors import ConfigurationError

__all__ = [
    "bool_argument",
    "flag",
    "function",
    "is_int",
    "is_number",
    "limit",
    "positive_int",
    "seconds",
    "whole_seconds",
]

_FLOAT_MAX: Final = sys.float_info.max


def is_number(value: object) -> bool:
    """A finite int or float (a usable number of seconds or a timestamp)."""
    if isinstance(value, float):
        return math.isfinite(value)
    # bool is an int subclass; a JSON true must not pass as a timestamp. JSON integers have
    # no size limit: one beyond a float's range (10**400) overflows math.isfinite and any
    # arithmetic with the clock, so it is no number of seconds either.
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _FLOAT_MAX


def is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool (``True`` is an int to Python, never a count here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def seconds(name: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a finite, non-negative (or ``positive``) number of seconds."""
    if not is_number(value) or value < 0 or (positive and value == 0):  # type: ignore[operator]
        kind = "positive" if positive else "non-negative"
        raise ConfigurationError(f"{name} must be a {kind} number of seconds, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def whole_seconds(name: str, value: object) -> int:
    """``value`` as a positive whole number of seconds (a cookie's Max-Age, Retry-After)."""
    if not is_int(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive integer of seconds")
    return value


def positive_int(name: str, value: object) -> int:
    """``value`` as an int of at least 1 (a size or a count)."""
    if not is_int(value) or value < 1:
        raise ConfigurationError(f"{name} must be a positive int")
    return value


def limit(name: str, value: object, *, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum`` (a size, a count; 0 where it turns
    something off), the message showing the value given."""
    if not is_int(value) or value < minimum:
        raise ConfigurationError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def flag(name: str, value: object) -> bool:
    """``value`` as a configuration switch: True or False, not merely truthy."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a bool")
    return value


def function(name: str, value: object) -> None:
    """``value`` must be callable (a hook, a loader, a clock)."""
    if not callable(value):
        raise ConfigurationError(f"{name} must be callable")


def bool_argument(name: str, value: object) -> bool:
    """``value`` as a call's True-or-False argument: a :class:`TypeError` otherwise, as for
    any argument of the wrong type (it is the call that is wrong, not the configuration)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value
