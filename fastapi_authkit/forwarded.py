"""The client's address behind proxies the application trusts, for limits keyed by address.

:func:`~fastapi_authkit.clientinfo.client_ip` is what the server saw (``scope["client"]``).
Behind a reverse proxy that is the proxy, the same for every client, so a limit keyed by it
would lock everyone out at once. ``X-Forwarded-For`` names the client, but any client can
send it: an attacker varying it would get a fresh address per request. So the header is
believed only from the proxies the application names (:class:`TrustedProxies`), and only
as far as they vouch for it: read from the right (each proxy appends the peer it saw), the
first entry that is not one of those proxies is the client. With no trusted proxy (the
default) the header is never read.

An address is also reduced to what one client controls: an IPv6 host usually holds a whole
/64 (a client can pick a new address in it per request), so IPv6 addresses count by their
/64 network; an IPv4-mapped IPv6 address counts as its IPv4 address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .clientinfo import client_ip
from .errors import ConfigurationError

__all__ = ["TrustedProxies", "address_key"]

# One X-Forwarded-For header (or several, joined) longer than this is cut: a real chain of
# proxies is a few entries, and the right end (the trusted hops) is what is read.
_MAX_HEADER: Final = 4096
_IPV6_CLIENT_PREFIX: Final = 64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed: addresses or networks
    (``"10.0.0.0/8"``, ``"::1"``). Empty: the header is ignored."""

    __slots__ = ("_networks",)

    def __init__(self, proxies: Iterable[str]) -> None:
        if isinstance(proxies, str):
            raise ConfigurationError(
                "trusted_proxies must be a list of addresses or networks, not one string"
            )
        networks: list[Network] = []
        for proxy in proxies:
            try:
                networks.append(ipaddress.ip_network(str(proxy).strip(), strict=False))
            except ValueError as exc:
                raise ConfigurationError(
                    f"trusted_proxies: {proxy!r} is not an IP address or network"
                ) from exc
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: Address) -> bool:
        return any(address in network for network in self._networks)

    def client(self, scope: Mapping[str, Any]) -> Address | None:
        """The client's address for ``scope``: the direct peer, or, when the peer is a
        trusted proxy, the rightmost ``X-Forwarded-For`` entry that is not one. An entry
        that is not an address ends the walk at the last hop trusted to have written it
        (the trusted proxy itself, when all of them are trusted: the left end is then a
        proxy of ours too)."""
        peer_text = client_ip(scope)
        peer = _parse(peer_text) if peer_text is not None else None
        if peer is None or not self._networks or not self.trusts(peer):
            return peer
        chain = b",".join(
            value for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"
        )[:_MAX_HEADER]
        current = peer
        for entry in reversed(chain.decode("latin-1").split(",")):
            hop = _parse(entry)
            if hop is None:
                return current
            current = hop
            if not self.trusts(hop):
                return hop
        return current


def address_key(address: Address) -> str:
    """The text an address is counted under: IPv4 as it is, IPv6 by its /64."""
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((address, _IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(address)
