"""Runbooks end to end: forensic snapshots from the targets themselves (status GETs, a
preserve reference, hashed), and escalations that page instead of going global."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from examples.admin_sim import SimState
from tests.conftest import (
    DaemonFactory,
    Exchange,
    free_port,
    idle,
    log_kinds,
    post_alerts,
    wait_for,
)
from tests.test_engine import alert, payload
from tests.test_packs_daemon import latest_bundle, pages, sim

__all__ = ["sim"]  # the fixture, used by name


async def _snapshots(database: str, rule_id: str, count: int) -> dict[str, dict[str, Any]]:
    async def taken() -> bool:
        bundle = await latest_bundle(database, rule_id)
        return bundle is not None and len(bundle["snapshots"]) == count

    await wait_for(taken, what=f"{count} snapshots in the {rule_id} bundle")
    bundle = await latest_bundle(database, rule_id)
    assert bundle is not None
    return {s["name"]: s for s in bundle["snapshots"]}


async def test_a_ledger_violation_bundle_holds_the_exchange_forensics(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
        database: str) -> None:
    """3.1's bundle holds the exchange's Kafka offsets, ledger range and config, and the
    reference of the WAL it preserved; each result carries the SHA-256 of what was sent."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("LedgerInvariantViolation", "BTC-USD",
                                                  severity="SEV1")))
    await idle(daemon)
    snaps = await _snapshots(database, "ledger-invariant-violation", 4)
    assert all(s["ok"] for s in snaps.values()), snaps
    ranges = snaps["ledger-range"]["result"]
    assert json.loads(ranges["body"])["ledger_seq"] == 1_048_570
    assert ranges["sha256"] == hashlib.sha256(ranges["body"].encode()).hexdigest()
    preserved = snaps["preserve-wal"]["result"]
    assert preserved["method"] == "POST"
    answer = json.loads(preserved["body"])
    assert answer["reference"].startswith("exchange-preserve-")
    assert answer["asked"]["rule_id"] == "ledger-invariant-violation"
    assert isinstance(answer["asked"]["incident_id"], int)


async def test_an_edge_denial_spike_keeps_the_edge_reasons_not_prometheus(
        make_daemon: DaemonFactory, sim: SimState, http: aiohttp.ClientSession,
        database: str) -> None:
    """The edge's denial spike bundle holds the edge's own /metrics/reasons answer."""
    daemon = await make_daemon(rule_packs=["edge"])
    await post_alerts(http, daemon, payload(alert("alert_denial_spike", severity="sev2")))
    await idle(daemon)
    snaps = await _snapshots(database, "edge-denial-spike", 1)
    reasons = snaps["denial-reasons"]
    assert reasons["ok"] and reasons["kind"] == "http"
    assert json.loads(reasons["result"]["body"])["denials"]["tenant_mismatch"] == 37


async def test_a_kafka_outage_that_cannot_degrade_pages_and_keeps_trading(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> None:
    """Runbook 3.5 with the market-data gateway down: the degrade is retried, then recorded
    as containment_failed and paged; the exchange's mode is never touched (no global step)."""
    monkeypatch.setenv("RESPONDER_MARKETDATA_URL", f"http://127.0.0.1:{free_port()}")
    pager = tmp_path / "pages"
    daemon = await make_daemon(sinks=[
        {"name": "pager", "kind": "file", "dir": str(pager), "bundles": False, "pages": True}])
    await post_alerts(http, daemon, payload(alert("KafkaOutage", severity="sev2")))
    await idle(daemon, timeout_s=30)
    await wait_for(lambda: len(pages(pager)) == 1, what="the page saying the degrade failed")
    [page] = pages(pager)
    assert page["reason"] == "opened" and "CONTAINMENT FAILED" in page["summary"]
    assert "containment_failed" in await log_kinds(database)
    assert exchange.state.global_mode == "NORMAL"
    assert not [c for c in exchange.state.calls if c.path == "/admin/global/mode"]
    assert exchange.state.levels == {"/admin/consumers/analytics": "PAUSED"}


async def test_incidents_sealed_together_share_each_status_read_and_preserve_each(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
        database: str) -> None:
    """Five ledger incidents opened by one webhook are first sealed in one pass: each
    status document is read once for all five bundles, and each incident has its own
    preserve call, under its own Idempotency-Key."""
    daemon = await make_daemon()
    symbols = [f"S{n}-USD" for n in range(5)]
    await post_alerts(http, daemon, payload(*(alert("LedgerInvariantViolation", s)
                                              for s in symbols)))
    await idle(daemon)

    async def bundles() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database)
        try:
            rows = await conn.fetch(
                "SELECT DISTINCT ON (incident_id) body FROM evidence"
                " ORDER BY incident_id, version DESC")
        finally:
            await conn.close()
        return [json.loads(r["body"]) for r in rows]

    async def all_taken() -> bool:
        found = await bundles()
        return len(found) == 5 and all(len(b["snapshots"]) == 4 for b in found)

    await wait_for(all_taken, what="five bundles of four snapshots each")
    found = await bundles()
    for path, name in (("/admin/status/ledger-range", "ledger-range"),
                       ("/admin/config", "config")):
        assert exchange.state.reads[path] == 1, exchange.state.reads
        answers = {json.dumps(s["result"], sort_keys=True)
                   for b in found for s in b["snapshots"] if s["name"] == name}
        assert len(answers) == 1  # the same answer, its hash and all, in every bundle
    references = {json.loads(s["result"]["body"])["reference"]
                  for b in found for s in b["snapshots"] if s["name"] == "preserve-wal"}
    assert len(references) == 5
