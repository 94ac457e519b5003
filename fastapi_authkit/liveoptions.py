"""How open connections (WebSockets, streamed responses) end with their session: the options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import ConfigurationError
from .validation import is_int, seconds

__all__ = ["EndStreams", "LiveOptions", "live_options"]

# Which HTTP responses of a session end with it: event streams, every response, none.
EndStreams = Literal["event-stream", "all", "none"]


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """How open connections (WebSockets, streamed responses) end with their session: see
    :func:`create_store`'s ``close_code``, ``close_at_token_expiry``, ``end_streams`` and
    ``live_check_interval``."""

    close_code: int = 1008
    close_at_token_expiry: float | None = None
    end_streams: EndStreams = "event-stream"
    check_interval: float = 1.0


def live_options(
    close_code: object, expiry: object, end_streams: object, interval: object
) -> LiveOptions:
    """``create_store``'s four options of open connections, checked."""
    if not is_int(close_code) or not (close_code == 1008 or 4000 <= close_code <= 4999):
        raise ConfigurationError(
            f"close_code must be 1008 or an application code 4000-4999, got {close_code!r}"
        )
    if end_streams not in ("event-stream", "all", "none"):
        raise ConfigurationError("end_streams must be 'event-stream', 'all' or 'none'")
    return LiveOptions(
        close_code=close_code,
        close_at_token_expiry=None if expiry is None else seconds("close_at_token_expiry", expiry),
        end_streams=end_streams,
        check_interval=seconds("live_check_interval", interval, positive=True),
    )
