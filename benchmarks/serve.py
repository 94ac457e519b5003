"""``uvicorn`` with its own command line, minus one uvicorn bug that would swamp the storms.

With ``--workers N`` uvicorn's supervisor binds the listening socket with ``proto`` left at
0; accepted sockets inherit it, asyncio then skips ``TCP_NODELAY``, and on Linux every
keep-alive response that follows other traffic waits ~40 ms for the client's delayed ACK
(Nagle; uvicorn issue #3149). The single-process path is not affected. This launcher
re-creates the bound socket from its descriptor, which reads the real protocol (TCP), and
otherwise runs uvicorn unchanged:

    python -m benchmarks.serve benchmarks.bench_app:app --workers 2 --port 8000
"""

from __future__ import annotations

import socket

from uvicorn.config import Config
from uvicorn.main import main as uvicorn_main

_bind_socket = Config.bind_socket


def bind_socket(self: Config) -> socket.socket:
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock = socket.socket(fileno=sock.detach())  # family, type and proto read from the fd
    return sock


if __name__ == "__main__":
    Config.bind_socket = bind_socket  # type: ignore[method-assign]
    uvicorn_main()
