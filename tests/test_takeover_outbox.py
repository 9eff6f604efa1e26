"""An outbox row a killed replica was delivering is sent by the survivor once the killed
replica's session ends, not after the row's 30 s lease (docs/takeover.md)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.conftest import Proc, fixture_bytes, wait_for
from tests.test_process import kill, post
from tests.test_replicas import rows
from tests.test_takeover import start_pair


class HoldFirst:
    """A webhook sink that never answers its first request, and accepts the rest."""

    def __init__(self) -> None:
        self.held = asyncio.Event()
        self.accepted: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        if not self.held.is_set():
            self.held.set()
            await asyncio.sleep(3600)
        self.accepted.append(request.headers["Idempotency-Key"])
        return web.Response(status=204)


async def test_a_killed_replicas_delivery_is_sent_by_the_survivor_before_its_lease_ends(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession,
) -> None:
    """The replica delivering a row is SIGKILLed while the sink holds the request: the other
    replica delivers that row, earlier than its lease would have let it (database clock)."""
    sink = HoldFirst()
    app = web.Application()
    app.router.add_post("/hook", sink.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        sinks = json.dumps([{"name": "hook", "kind": "webhook", "url": url}])
        pair = await start_pair(tmp_path, procs, database, rules_dir, RESPONDER_SINKS=sinks)
        assert await post(http, pair["replica-a"].port, fixture_bytes("firing-single.json")) \
            == 200
        await asyncio.wait_for(sink.held.wait(), timeout=60)
        [row] = await rows(database, "SELECT id, idempotency_key, claimed_by,"
                                     " next_attempt_at FROM outbox WHERE status = 'pending'"
                                     " AND next_attempt_at > now() AND attempts = 1")
        assert row["claimed_by"] in pair
        await kill(pair[row["claimed_by"]])

        async def delivered() -> bool:
            return bool(await rows(database, "SELECT 1 FROM outbox WHERE id = $1"
                                             " AND status = 'delivered'", row["id"]))

        await wait_for(delivered, timeout_s=60, what="the held row delivered")
        [done] = await rows(database, "SELECT delivered_at, attempts FROM outbox"
                                      " WHERE id = $1", row["id"])
        assert done["delivered_at"] < row["next_attempt_at"]  # the lease had not run out
        assert done["attempts"] == 2
        assert row["idempotency_key"] in sink.accepted
    finally:
        await runner.cleanup()
