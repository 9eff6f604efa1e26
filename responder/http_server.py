"""The listening socket: a cap on open connections, so slow or idle clients cannot take
every file descriptor, and a deadline for a request's headers.

aiohttp (3.14) arms its keep-alive timer when a connection opens and closes the connection
if no complete request head has arrived by then, so ``keepalive_timeout`` is the
header-read timeout as well as the idle timeout between requests. Connections over the
cap are answered 503 and closed at once, before any parsing (a client still sending may
see the reset rather than the answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n"
           b"Retry-After: 1\r\n\r\n")


class _Refused(asyncio.Protocol):
    """A connection over the cap: one answer, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(REFUSED)
        transport.close()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted from accept to close. The server's own
    list of connections grows only in connection_made, after a whole burst of accepts has
    been handed out, so it cannot enforce a cap."""

    def __init__(self, inner: asyncio.Protocol, site: CappedSite) -> None:
        self._inner, self._site = inner, site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._site.open_connections -= 1
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class CappedSite(web.TCPSite):
    """A TCP site that refuses connections beyond ``max_connections`` open at once."""

    __slots__ = ("_max_connections", "_on_refused", "open_connections")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *,
                 max_connections: int, on_refused: Callable[[], None]) -> None:
        super().__init__(runner, host, port)
        self._max_connections = max_connections
        self._on_refused = on_refused
        self.open_connections = 0

    def _protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        if self.open_connections >= self._max_connections:
            self._on_refused()
            return _Refused()
        self.open_connections += 1
        return _Counted(server(), self)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self._host, self._port,
                                                backlog=self._backlog)
        self._bound_port = self._server.sockets[0].getsockname()[1]
