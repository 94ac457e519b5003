"""Redis clients from URLs: one server, a cluster, or the primary that Sentinel names.

::

    redis://[[user]:password@]host[:port][/db]          one server (rediss:// with TLS)
    unix://[[user]:password@]/path/to/socket[?db=N]     one server on a Unix socket
    redis+cluster://[[user]:password@]host:port[,host:port...]
                                                        a cluster, found from any of the
                                                        listed nodes (rediss+cluster://)
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
                                                        the primary that the Sentinels
                                                        name ``service`` (default port
                                                        26379; rediss+sentinel://)

Query options are redis-py's own URL options (``?ssl_cert_reqs=required``) and apply to
the data nodes, as do the URL's user and password; ``sentinel_username`` and
``sentinel_password`` authenticate to the Sentinels themselves. The two multi-host forms
follow the ``redis+sentinel://`` convention other Python tools use; redis-py has no URL
form for either.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, SSLConnection
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ...errors import ConfigurationError

__all__ = ["client_from_url"]

_DEFAULT_PORTS = {"cluster": 6379, "sentinel": 26379}


def _host_port(text: str, default: int) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"a host is missing in {text!r}")
    if not port:
        return host, default
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port)


def client_from_url(url: str, *, timeout: float) -> tuple[Redis | RedisCluster, Sentinel | None]:
    """The client for ``url`` (see the module docstring) and, for a Sentinel URL, the
    :class:`Sentinel` behind it (the caller closes both). ``timeout`` bounds every call
    (connect and read) and one retry is allowed, with no backoff: a slow Redis must turn
    into a fast 503, not a queue of waiting requests."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a Redis URL must be a str, got {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    base, _, kind = scheme.partition("+")
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1),
    }
    if not sep or base not in ("redis", "rediss", "unix") or kind not in ("", *_DEFAULT_PORTS):
        # The URL may hold a password: only its scheme goes into the message.
        raise ConfigurationError(
            f"unsupported Redis URL scheme {scheme!r}: use redis://, rediss://, unix://, "
            "redis+cluster:// or redis+sentinel:// (rediss+... with TLS)"
        )
    try:
        if not kind:
            return Redis.from_url(url, **common), None
        if base == "unix":
            raise ValueError("clusters and Sentinels are reached over TCP")
        location, _, query = rest.partition("?")
        netloc, _, path = location.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        nodes = [_host_port(h, _DEFAULT_PORTS[kind]) for h in hosts.split(",")]
        # redis-py parses the options and credentials of a one-host URL; reuse that.
        one = f"{base}://{userinfo}{at}{hosts.split(',')[0]}" + (f"?{query}" if query else "")
        options: dict[str, Any] = dict(parse_url(one))
        options.pop("host", None)
        options.pop("port", None)
        tls = options.pop("connection_class", None) is SSLConnection
        if kind == "cluster":
            if path.strip("/"):
                raise ValueError("a cluster has no numbered databases: drop the path")
            startup = [ClusterNode(host, port) for host, port in nodes]
            return RedisCluster(startup_nodes=startup, ssl=tls, **common, **options), None
        service, _, db = path.strip("/").partition("/")
        if not service:
            raise ValueError("the Sentinel service name is missing: .../mymaster")
        if db:
            options["db"] = int(db)
        sentinel_kwargs = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            **{k: v for k, v in options.items() if k.startswith("ssl_")},
        }
        for name in ("username", "password"):
            value = options.pop(f"sentinel_{name}", None)
            if value is not None:
                sentinel_kwargs[name] = value
        if tls:
            sentinel_kwargs["ssl"] = True
        sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs)
        return sentinel.master_for(service, ssl=tls, **common, **options), sentinel
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"bad {scheme}:// URL: {exc}") from exc
