"""The incident list's event stream: only for a session, it announces a new incident with
its id, and it ends when the daemon drains, so it never holds up a shutdown."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import VIEWER_TOKEN, DaemonFactory, Exchange, url, wait_for
from tests.test_incident_page_browser import ledger, post
from tests.webpage import Browser


async def test_stream_needs_a_session(make_daemon: DaemonFactory,
                                      http: aiohttp.ClientSession) -> None:
    """Without a session the stream is refused."""
    daemon = await make_daemon()
    async with http.get(url(daemon, "/events/incidents")) as resp:
        assert resp.status == 401


async def test_stream_announces_then_ends_on_drain(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession) -> None:
    """A new incident is announced with its id; on shutdown the stream ends by itself."""
    daemon = await make_daemon()
    b = Browser(daemon)
    try:
        await b.login(VIEWER_TOKEN)
        async with b.http.get(url(daemon, "/events/incidents?after=0")) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            await post(http, daemon, ledger())
            seen = b""
            while b"event: incident" not in seen:
                seen += await asyncio.wait_for(resp.content.readany(), 30)
            assert b"id: 1\n" in seen
            stopping = asyncio.create_task(daemon.shutdown())
            await wait_for(lambda: resp.content.at_eof() or stopping.done(), timeout_s=30,
                           what="the stream to end or the daemon to stop")
            rest = await asyncio.wait_for(resp.content.read(), 30)
            assert b"event: incident" not in rest
            await asyncio.wait_for(stopping, 60)
    finally:
        await b.close()
