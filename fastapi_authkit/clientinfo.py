"""What a connection says about its client: its user agent and the address the server saw.

Read from the ASGI scope only. The address is ``scope["client"]``, which is what the server
put there: the TCP peer, or, when the server is told to trust a proxy (``uvicorn
--proxy-headers --forwarded-allow-ips=<proxy>``), the address that proxy forwarded. The kit
never reads ``X-Forwarded-For`` itself, as it never lets forwarded headers change cookie
flags or the expected origin: any client can send them.

Both values are the client's own words, stored and shown back (the built-in issuer's list
of sessions), so they are bounded and reduced to printable ASCII here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MAX_ADDRESS", "MAX_USER_AGENT", "ClientInfo", "client_info", "client_ip"]

# Longer user agents exist (a browser with many extensions' tokens), but the first 256
# characters name the browser and the platform, which is what a person recognises.
MAX_USER_AGENT: Final = 256
# An IPv6 address with a zone index fits; anything longer is not an address.
MAX_ADDRESS: Final = 64


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A client as one request describes it: ``user_agent`` (the ``User-Agent`` header)
    and ``ip`` (the ASGI scope's client address); each None when absent."""

    user_agent: str | None = None
    ip: str | None = None


def printable(value: str, limit: int) -> str | None:
    """``value`` cut to ``limit`` characters of printable ASCII (anything else becomes
    ``?``), or None when nothing is left."""
    text = "".join(c if " " <= c <= "~" else "?" for c in value[:limit]).strip()
    return text or None


def client_ip(scope: Mapping[str, Any]) -> str | None:
    """The client address of an ASGI connection scope, as the server saw it, or None."""
    client = scope.get("client")
    if isinstance(client, list | tuple) and client and isinstance(client[0], str):
        return printable(client[0], MAX_ADDRESS)
    return None


def client_info(scope: Mapping[str, Any]) -> ClientInfo:
    """The :class:`ClientInfo` of an ASGI connection scope (http or websocket)."""
    user_agent = None
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            user_agent = printable(value[: MAX_USER_AGENT * 2].decode("latin-1"), MAX_USER_AGENT)
            break
    return ClientInfo(user_agent, client_ip(scope))
