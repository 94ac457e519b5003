"""Talking to the identity provider over HTTP: bounded, and every failure a ProviderError.

The provider is outside our control, so every call has a timeout, every answer a size
limit, and nothing it does (refuse the connection, time out, answer HTML, answer 10 MB)
escapes as anything but :class:`~fastapi_authkit.errors.ProviderError`. httpx2 is
Pydantic's maintained fork of httpx, the client Starlette's TestClient prefers.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

import httpx2

from ..errors import ConfigurationError, ProviderError

__all__ = ["Answer", "ProviderHTTP", "check_url"]

# Discovery documents, key sets and token answers are a few KiB; anything far larger is not
# what the standard describes and must not be read into memory.
MAX_ANSWER_BYTES: Final = 256 * 1024


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(name: str, url: object, *, allow_http: bool) -> str:
    """``url`` if it is an absolute https URL (http only on loopback, or when allowed)."""
    if not isinstance(url, str):
        raise ConfigurationError(f"{name} must be a URL string, got {url!r}")
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("https", "http"):
        raise ConfigurationError(f"{name} must be an absolute https URL, got {url!r}")
    if parts.scheme == "http" and not (allow_http or _loopback(parts.hostname)):
        raise ConfigurationError(
            f"{name} {url!r} is plain http: tokens and keys would travel unprotected; use "
            "https (http is accepted on loopback, or with allow_insecure_http=True)"
        )
    return url


class Answer(NamedTuple):
    """A provider's answer: the status and the parsed JSON body (None when it is not JSON)."""

    status: int
    body: Any


class ProviderHTTP:
    """GET and POST to the provider with a timeout and a size limit.

    With ``client`` (an ``httpx2.AsyncClient`` of the app's, for pooled connections) every
    call goes through it; without, each call opens and closes its own, so no connection
    outlives the event loop that made it (TestClient runs one loop per request).
    """

    __slots__ = ("_client", "_timeout")

    def __init__(self, client: httpx2.AsyncClient | None, timeout: float) -> None:
        if client is not None and not isinstance(client, httpx2.AsyncClient):
            raise ConfigurationError("http_client must be an httpx2.AsyncClient")
        self._client = client
        self._timeout = timeout

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[httpx2.AsyncClient]:
        if self._client is not None:
            yield self._client
            return
        async with httpx2.AsyncClient(timeout=self._timeout) as client:
            yield client

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> Answer:
        return await self._request("GET", url, None, headers)

    async def post_form(
        self, url: str, form: Mapping[str, str], headers: Mapping[str, str] | None = None
    ) -> Answer:
        return await self._request("POST", url, form, headers)

    async def _request(
        self,
        method: str,
        url: str,
        form: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> Answer:
        request_headers = {"accept": "application/json", **(headers or {})}
        try:
            async with (
                self._session() as client,
                client.stream(
                    method,
                    url,
                    data=dict(form) if form is not None else None,
                    headers=request_headers,
                    timeout=self._timeout,
                    follow_redirects=False,
                ) as response,
            ):
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise ProviderError(
                            f"{method} {url}: answer larger than {MAX_ANSWER_BYTES} bytes"
                        )
                status = response.status_code
        except httpx2.TimeoutException as exc:
            raise ProviderError(f"{method} {url}: timed out after {self._timeout}s") from exc
        except httpx2.HTTPError as exc:
            raise ProviderError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        return Answer(status, body)
