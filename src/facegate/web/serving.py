"""The HTTP protocol ``facegate serve`` runs under uvicorn: h11 with ``TCP_NODELAY`` on every
connection, whatever the number of workers.

Why: asyncio sets ``TCP_NODELAY`` on an accepted socket only when the listening socket was made
with ``proto=IPPROTO_TCP``. With one worker uvicorn lets asyncio bind (``getaddrinfo`` gives
proto 6), but with ``--workers 2`` or more it binds the shared socket itself with
``socket.socket(AF_INET)`` (proto 0), so its connections keep Nagle's algorithm. uvicorn writes a
response's headers and its body as two segments; on a reused connection the client delays its ACK
of the first (Linux: 40 ms), and Nagle holds the second until that ACK arrives. That was the
~50 ms added to every request on a keep-alive connection with several workers (issue 16).
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

PROTOCOL = "facegate.web.serving:NoDelayH11Protocol"  # what ``uvicorn.run(http=...)`` imports


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Switch Nagle's algorithm off on a TCP transport (a Unix socket is left alone)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with ``TCP_NODELAY`` set when a connection is made."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
