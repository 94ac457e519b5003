"""A raw HTTP/1.1 client for benchmarks against a real server: keep-alive, no pool, no
retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from benchmarks.cookies import cookie_header, parse_set_cookies


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def set_cookies(self) -> dict[str, str]:
        return parse_set_cookies([v for k, v in self.headers if k == "set-cookie"])


class HttpClient:
    """One keep-alive connection. Small and predictable: no pool, no retries, so a timed
    request is one write and one read on an already open socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> HttpClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    @staticmethod
    def encode(
        port: int,
        path: str,
        cookies: Mapping[str, str] | None = None,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """A request without a body (``content-length: 0`` for other methods than GET)."""
        lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "accept: application/json"]
        if method != "GET":
            lines.append("content-length: 0")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if cookies:
            lines.append(f"cookie: {cookie_header(cookies).decode()}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def send(self, request: bytes) -> None:
        self.writer.write(request)
        await self.writer.drain()

    async def read(self) -> HttpResponse:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = []
        length = 0
        for line in header_lines:
            if not line:
                continue
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            headers.append((name, value))
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise RuntimeError("chunked responses are not supported by this client")
        body = await self.reader.readexactly(length) if length else b""
        return HttpResponse(int(status_line.split()[1]), headers, body)

    async def get(self, request: bytes) -> HttpResponse:
        await self.send(request)
        return await self.read()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def http_get(port: int, path: str, cookies: Mapping[str, str] | None = None) -> HttpResponse:
    """One GET on a fresh connection (10 s at most)."""
    async with asyncio.timeout(10):
        client = await HttpClient.connect(port)
        try:
            return await client.get(HttpClient.encode(port, path, cookies))
        finally:
            await client.close()
