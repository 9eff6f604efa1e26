"""Server-sent events for the incident list: the page hears of a new incident within a
second or two and re-reads itself; without JavaScript a reload shows the same.

Each stream polls the store (one indexed max() a second), so an incident opened by any
replica is seen. Streams end after a few minutes (the browser reconnects, sending the last
id it saw) and when the daemon drains, so they never hold up a shutdown.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from responder.params import plain_int
from responder.state import STATE
from responder.store import incident_page
from responder.web.context import WEB
from responder.web.guard import current, refuse

POLL_S = 1.0
HEARTBEAT_S = 15.0
STREAM_S = 300.0
MAX_STREAMS = 64


def _after(request: web.Request) -> int:
    best = 0
    for raw in (request.query.get("after"), request.headers.get("Last-Event-ID")):
        value = plain_int(raw) if raw else None
        best = max(best, value or 0)
    return best


async def incident_events(request: web.Request) -> web.StreamResponse:
    session = await current(request)
    if session is None:
        return refuse(request, None, 401, "Your session has ended; log in again.",
                      "no_session")
    live = request.app[WEB].live
    if live.streams >= MAX_STREAMS:
        return refuse(request, session, 503, "Too many live pages open; reload instead.",
                      "too_many_streams")
    state = request.app[STATE]
    after = _after(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Content-Type-Options": "nosniff"})
    live.streams += 1
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        started = last_write = time.monotonic()
        while not state.is_draining and time.monotonic() - started < STREAM_S:
            newest = await incident_page.newest_incident(state.pool)
            if newest > after:
                after = newest
                body = json.dumps({"newest": newest})
                await response.write(f"id: {newest}\nevent: incident\ndata: {body}\n\n"
                                     .encode())
                last_write = time.monotonic()
            elif time.monotonic() - last_write > HEARTBEAT_S:
                await response.write(b": still here\n\n")
                last_write = time.monotonic()
            await asyncio.sleep(POLL_S)
    except ConnectionResetError:
        pass  # the browser went away: nothing to finish
    finally:
        live.streams -= 1
    return response
