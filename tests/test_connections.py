"""Slow clients cannot exhaust descriptors: connections over the cap are answered 503 and
closed, and a client that never finishes its headers is cut off after the header timeout."""

from __future__ import annotations

import asyncio

import aiohttp

from responder.http_server import REFUSED
from tests.conftest import DaemonFactory, Exchange, fixture_bytes, post_alerts, wait_for

SLOW_CLIENTS = 300
CAP = 40
PARTIAL_HEAD = b"POST /webhooks/alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


async def _slow_client(port: int) -> bytes:
    """Open a connection, send half a request head, and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(PARTIAL_HEAD)
        await writer.drain()
        return await reader.read()
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def test_slow_clients_are_capped_and_cut_off(make_daemon: DaemonFactory,
                                                   exchange: Exchange,
                                                   http: aiohttp.ClientSession) -> None:
    """Of 300 clients that never finish their headers, those over the cap of 40 get 503 at
    once, the rest are closed after the header timeout; then a real alert is contained."""
    daemon = await make_daemon(http_max_connections=CAP, http_header_timeout_s=1.0)
    assert daemon.port is not None
    clients = [asyncio.create_task(_slow_client(daemon.port)) for _ in range(SLOW_CLIENTS)]
    try:
        # Every one of them ends, closed by the server: none is held open forever.
        answers = await asyncio.wait_for(asyncio.gather(*clients), timeout=60)
    finally:
        for task in clients:
            task.cancel()
    # A refused client that is still sending may see a reset instead of the 503.
    assert all(a in (b"", REFUSED) for a in answers)
    assert daemon.metrics.connections_refused._value.get() >= SLOW_CLIENTS - CAP
    assert daemon._runner is not None and daemon._runner.server is not None
    server = daemon._runner.server
    await wait_for(lambda: not server.connections, timeout_s=10, what="all connections closed")
    status, _ = await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    assert status == 200
    await wait_for(lambda: exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY",
                   what="containment after the slow clients")
