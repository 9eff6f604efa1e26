"""Slow clients cannot exhaust descriptors: connections over the cap are answered 503 and
closed, and a client that never finishes its headers is cut off after the header timeout."""

from __future__ import annotations

import asyncio

import aiohttp

from responder.daemon import Daemon
from responder.http_server import REFUSED, CappedSite
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


def _site(daemon: Daemon) -> CappedSite:
    assert daemon._runner is not None
    [site] = daemon._runner.sites
    assert isinstance(site, CappedSite)
    return site


async def test_connections_over_the_cap_are_refused_at_once(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession) -> None:
    """Of 300 clients that never finish their headers, the 260 over the cap of 40 are
    answered 503 and closed at once; when the others leave, a real alert is contained."""
    # A header timeout longer than the test: only the cap closes anything here.
    daemon = await make_daemon(http_max_connections=CAP, http_header_timeout_s=120.0)
    site = _site(daemon)
    assert daemon.port is not None
    clients = [asyncio.create_task(_slow_client(daemon.port)) for _ in range(SLOW_CLIENTS)]
    try:
        await wait_for(lambda: sum(t.done() for t in clients) == SLOW_CLIENTS - CAP,
                       timeout_s=60, what="every client over the cap answered")
        assert site.open_connections == CAP
        assert daemon.metrics.connections_refused._value.get() == SLOW_CLIENTS - CAP
        # A refused client that is still sending may see a reset instead of the 503.
        assert all(t.result() in (b"", REFUSED) for t in clients if t.done())
    finally:
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    await wait_for(lambda: site.open_connections == 0, timeout_s=30,
                   what="the held connections closed")
    status, _ = await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    assert status == 200
    await wait_for(lambda: exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY",
                   what="containment after the slow clients")


async def test_a_client_that_never_finishes_its_headers_is_cut_off(
        make_daemon: DaemonFactory) -> None:
    """The server closes a connection whose request head has not arrived by the timeout."""
    daemon = await make_daemon(http_header_timeout_s=1.0)
    site = _site(daemon)
    assert daemon.port is not None
    answers = await asyncio.wait_for(
        asyncio.gather(*(_slow_client(daemon.port) for _ in range(5))), timeout=60)
    assert answers == [b""] * 5
    await wait_for(lambda: site.open_connections == 0, timeout_s=10,
                   what="all connections closed")
