"""What tests' real HTTP clients need besides httpx2: a browser's cookie store by hand, and
sending a request until Redis's absence shows."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx2


def until_unavailable(request: Callable[[], Any], within: float = 2.0) -> Any:
    """After Redis went away (killed or paused): send ``request()`` until it answers 503
    and return that response.

    A process notices at once (its revocation subscription breaks) or, at the latest, when
    its view of revocations can no longer prove itself current (``max_lag``, 0.1 s by
    default); until then it may still answer 200 from that view, which was current when
    Redis went away. No answer in the meantime sets or clears a cookie.
    """
    deadline = time.monotonic() + within
    while True:
        # A 200 is judged by when its request was sent: on a busy machine the answer to
        # one sent in time can arrive after the deadline.
        sent_at = time.monotonic()
        response = request()
        assert response.status_code in (200, 503), response.text
        assert response.headers.get_list("set-cookie") == []
        if response.status_code == 503:
            return response
        assert sent_at < deadline, f"still answered 200 {within} s after Redis went"
        time.sleep(0.01)


class CookieKeeper:
    """A browser's cookie store for one site, by hand: name -> (value, expiry)."""

    def __init__(self) -> None:
        self._cookies: dict[str, tuple[str, float]] = {}

    def update(self, response: httpx2.Response) -> dict[str, dict[str, str]]:
        """Apply the response's Set-Cookie headers; return name -> attributes as set."""
        seen: dict[str, dict[str, str]] = {}
        for header in response.headers.get_list("set-cookie"):
            pair, *attributes = header.split(";")
            name, _, value = pair.strip().partition("=")
            attrs = {"value": value}
            for attribute in attributes:
                key, _, attr_value = attribute.strip().partition("=")
                attrs[key.lower()] = attr_value
            seen[name] = attrs
            max_age = int(attrs.get("max-age", "86400"))
            if max_age <= 0:
                self._cookies.pop(name, None)
            else:
                self._cookies[name] = (value, time.monotonic() + max_age)
        return seen

    def values(self) -> dict[str, str]:
        now = time.monotonic()
        return {name: value for name, (value, until) in self._cookies.items() if until > now}

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        values = self.values()
        if values:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in values.items())
        return headers
