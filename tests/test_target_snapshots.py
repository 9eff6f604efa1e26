"""Forensic snapshots from the targets themselves: the bundles of 3.1 and of the edge's
denial spike hold what the target answered (status GETs, a preserve reference), hashed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import aiohttp

from examples.admin_sim import SimState
from tests.conftest import DaemonFactory, Exchange, idle, post_alerts, wait_for
from tests.test_engine import alert, payload
from tests.test_packs_daemon import latest_bundle, sim

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
