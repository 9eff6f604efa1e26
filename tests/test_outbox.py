"""Deliveries through the outbox: retried until taken, once per sink, paged when dead."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.conftest import (
    EXCHANGE_TOKEN,
    VIEWER_TOKEN,
    Broker,
    DaemonFactory,
    fixture_bytes,
    free_port,
    idle,
    post_alerts,
    wait_for,
)


@dataclass
class Receiver:
    """A webhook receiver that fails its first `fail_first` requests."""

    fail_first: int = 0
    seen: int = 0
    accepted: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen += 1
        if self.seen <= self.fail_first:
            return web.Response(status=500)
        self.accepted.append((request.headers["Idempotency-Key"],
                              request.headers.get("X-Responder-Kind", ""),
                              await request.json()))
        return web.Response(status=204)


async def serve(receiver: Receiver, port: int = 0) -> tuple[str, web.AppRunner]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}/hook", runner


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver(fail_first=3)
    url, runner = await serve(r)
    yield r, url
    await runner.cleanup()


async def outbox(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch("SELECT sink, kind, idempotency_key, status, attempts"
                                     " FROM outbox ORDER BY id"))
    finally:
        await conn.close()


async def all_delivered(dsn: str) -> bool:
    rows = await outbox(dsn)
    return bool(rows) and all(r["status"] == "delivered" for r in rows)


async def test_every_bundle_reaches_every_sink_once(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, tmp_path: Path,
    receiver: tuple[Receiver, str],
) -> None:
    """A receiver failing for a while still gets each bundle once; so does the directory."""
    hook, url = receiver
    sinks = [{"name": "files", "kind": "file", "dir": str(tmp_path / "evidence")},
             {"name": "hook", "kind": "webhook", "url": url, "hmac_secret": "sink-secret-99"}]
    daemon = await make_daemon(sinks=sinks)
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    await wait_for(lambda: all_delivered(database), timeout_s=30, what="deliveries")
    rows = await outbox(database)
    bundles = [r for r in rows if r["kind"] == "bundle"]
    assert {r["sink"] for r in bundles} == {"files", "hook"}
    hook_keys = [k for k, kind, _ in hook.accepted if kind == "bundle"]
    assert sorted(hook_keys) == sorted(r["idempotency_key"] for r in bundles
                                       if r["sink"] == "hook")
    assert max(Counter(hook_keys).values()) == 1
    files = sorted(p.stem for p in (tmp_path / "evidence").glob("bundle-*.json"))
    assert files == sorted(r["idempotency_key"] for r in bundles if r["sink"] == "files")
    assert hook.seen > len(hook.accepted)  # it did fail first
    async with http.get(f"http://127.0.0.1:{daemon.port}/v1/incidents/1",
                        headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}) as resp:
        shown = (await resp.json())["deliveries"]
    assert {(d["sink"], d["status"]) for d in shown} == {("files", "delivered"),
                                                         ("hook", "delivered")}
    for _, _, payload in hook.accepted:
        assert EXCHANGE_TOKEN not in json.dumps(payload)


async def test_sev1_containment_pages_with_a_readable_summary(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
) -> None:
    """A SEV1 containment sends one page: severity, rule, what is contained, and a link."""
    pager = Receiver()
    url, runner = await serve(pager)
    try:
        daemon = await make_daemon(sinks=[{"name": "chat", "kind": "slack", "url": url,
                                           "bundles": False, "pages": True}])
        await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
        await idle(daemon)
        await wait_for(lambda: all_delivered(database), timeout_s=15, what="the page")
    finally:
        await runner.cleanup()
    pages = [p for _, kind, p in pager.accepted if kind == "page"]
    assert len(pages) == 1
    text = pages[0]["text"]
    assert text.startswith("[SEV1] ledger-invariant-violation (symbol=BTC-USD)")
    assert "withdrawals=HALTED" in text and "symbol-mode[BTC-USD]=CANCEL_ONLY" in text
    assert "Incident: http://" in text and text.endswith("/incidents/1")


async def test_a_dead_delivery_is_paged(make_daemon: DaemonFactory,
                                        http: aiohttp.ClientSession, database: str) -> None:
    """A sink that never takes a bundle ends dead after its attempts, and that is paged."""
    pager = Receiver()
    url, runner = await serve(pager)
    try:
        daemon = await make_daemon(sinks=[
            {"name": "broken", "kind": "webhook", "url": f"http://127.0.0.1:{free_port()}/x",
             "max_attempts": 2},
            {"name": "chat", "kind": "slack", "url": url, "bundles": False, "pages": True}])
        await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
        await idle(daemon)

        async def dead_paged() -> bool:
            return any(p["text"].startswith("delivery bundle-") for _, _, p in pager.accepted)

        await wait_for(dead_paged, timeout_s=20, what="a page about the dead delivery")
    finally:
        await runner.cleanup()
    statuses = {r["status"] for r in await outbox(database) if r["sink"] == "broken"}
    assert statuses == {"dead"}
    assert daemon.metrics.deliveries.labels("broken", "dead")._value.get() >= 1


async def test_undelivered_rows_survive_a_restart(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
) -> None:
    """Rows left pending when the daemon stops are delivered by the next one."""
    port = free_port()
    sinks = [{"name": "hook", "kind": "webhook", "url": f"http://127.0.0.1:{port}/hook"}]
    first = await make_daemon(sinks=sinks)
    await post_alerts(http, first, fixture_bytes("firing-single.json"))
    await idle(first)
    await wait_for(lambda: _pending(database), what="an undelivered bundle")
    await first.shutdown()
    hook = Receiver()
    _, runner = await serve(hook, port)
    try:
        await make_daemon(sinks=sinks)

        async def settled() -> bool:
            # The new daemon keeps appending (delivery records, then a checkpoint of them),
            # so wait for a moment when every row it has queued is also delivered.
            rows = await outbox(database)
            return await all_delivered(database) and len(
                {k for k, _, _ in hook.accepted}) == len(rows)

        await wait_for(settled, timeout_s=30, what="delivery")
    finally:
        await runner.cleanup()
    assert len({k for k, _, _ in hook.accepted}) == len(await outbox(database))


async def _pending(dsn: str) -> bool:
    return any(r["status"] == "pending" for r in await outbox(dsn))


async def test_kafka_sink_delivers_each_bundle_once(
    kafka: Broker, make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
) -> None:
    """With the broker down for a while, every bundle still lands on the topic once."""
    from tests.test_kafka import topic_messages

    if kafka.popen is not None:
        kafka.stop()  # down at first: deliveries must wait and retry
    topic = f"evidence-{free_port()}"
    daemon = await make_daemon(sinks=[{"name": "bus", "kind": "kafka",
                                       "bootstrap": kafka.bootstrap, "topic": topic}])
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    if kafka.popen is not None:
        await wait_for(lambda: _attempted(database), timeout_s=20, what="a failed attempt")
        kafka.start()
    await wait_for(lambda: all_delivered(database), timeout_s=60, what="Kafka delivery")
    keys = [m.key.decode() for m in await topic_messages(kafka, topic)]
    expected = [r["idempotency_key"] for r in await outbox(database)]
    assert sorted(keys) == sorted(expected)


async def _attempted(dsn: str) -> bool:
    return any(r["attempts"] > 0 and r["status"] == "pending" for r in await outbox(dsn))


async def test_directory_sink_recovers_from_a_failure(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, tmp_path: Path,
) -> None:
    """A directory that cannot be written to (a file is in the way) is retried until it can."""
    target = tmp_path / "evidence"
    target.write_text("in the way")
    daemon = await make_daemon(sinks=[{"name": "files", "kind": "file", "dir": str(target)}])
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    await wait_for(lambda: _attempted(database), timeout_s=20, what="a failed attempt")
    target.unlink()
    await wait_for(lambda: all_delivered(database), timeout_s=30, what="delivery")
    written = sorted(p.stem for p in target.glob("*.json"))
    assert written == sorted(r["idempotency_key"] for r in await outbox(database))
