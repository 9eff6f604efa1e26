"""Packs end to end, against the packs simulator: containment through the pack's target,
the policy bundle hash kept in the evidence, and pages for rules that ask for one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from examples.admin_sim import STATE, SimState, make_app
from tests.conftest import DaemonFactory, idle, post_alerts, wait_for
from tests.test_engine import alert, payload

TOKEN = "test-packs-admin-token-cdef"


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SimState]:
    """The packs simulator on a free port, with every pack's target pointed at it."""
    app = make_app([TOKEN])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    for service in ("gateway", "briefcase", "edge"):
        monkeypatch.setenv(f"RESPONDER_{service.upper()}_URL", f"{base}/{service}")
        monkeypatch.setenv(f"RESPONDER_{service.upper()}_TOKEN", TOKEN)
    monkeypatch.setenv("RESPONDER_API_URL", f"{base}/api")
    yield app[STATE]
    await runner.cleanup()


async def latest_bundle(dsn: str, rule_id: str) -> dict[str, Any] | None:
    conn = await asyncpg.connect(dsn)
    try:
        body = await conn.fetchval(
            "SELECT e.body FROM evidence e JOIN incidents i ON i.id = e.incident_id"
            " WHERE i.rule_id = $1 ORDER BY e.version DESC LIMIT 1", rule_id)
    finally:
        await conn.close()
    return None if body is None else dict(json.loads(body))


def pages(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


async def test_leakage_denies_retrieval_and_keeps_the_policy_bundle_hash(
        make_daemon: DaemonFactory, sim: SimState, http: aiohttp.ClientSession, database: str,
        tmp_path: Path) -> None:
    """A leakage canary sets the gateway's retrieval policy to DENY_ALL (read back), and the
    evidence holds the gateway's policy bundle hash; the SEV1 containment pages."""
    pager = tmp_path / "pages"
    daemon = await make_daemon(rule_packs=["gateway-ledger"], sinks=[
        {"name": "pager", "kind": "file", "dir": str(pager), "bundles": False, "pages": True}])
    await post_alerts(http, daemon, payload(alert("LeakageCanaryTriggered", tenant="acme")))
    await idle(daemon)
    assert sim.docs["/gateway/admin/retrieval/policy"] == {"policy": "DENY_ALL"}

    async def sealed() -> bool:
        bundle = await latest_bundle(database, "gateway-leakage")
        return bundle is not None and bool(bundle["controls"])

    await wait_for(sealed, what="the leakage bundle with its controls")
    bundle = await latest_bundle(database, "gateway-leakage")
    assert bundle is not None
    [snapshot] = bundle["snapshots"]
    assert snapshot["name"] == "policy-bundle" and snapshot["ok"]
    assert "sha256:5f1c0e3a" in snapshot["result"]["body"]
    await wait_for(lambda: bool(pages(pager)), what="a page")
    assert [p["reason"] for p in pages(pager)] == ["opened"]


async def test_a_paging_rule_pages_with_no_containment(
        make_daemon: DaemonFactory, sim: SimState, http: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    """api-alarms' sustained 5xx calls nothing and pages once; throttles only notify."""
    pager = tmp_path / "pages"
    daemon = await make_daemon(rule_packs=["api-alarms"], sinks=[
        {"name": "pager", "kind": "file", "dir": str(pager), "bundles": False, "pages": True}])
    await post_alerts(http, daemon, payload(alert("ApiSustained5xx", severity="sev2")))
    await post_alerts(http, daemon, payload(alert("ApiThrottling", severity="sev3")))
    await idle(daemon)
    await wait_for(lambda: bool(pages(pager)), what="a page")
    assert sim.calls == []
    assert [(p["reason"], p["summary"].split(" ")[1]) for p in pages(pager)] == [
        ("opened", "api-5xx-sustained")]


async def test_tenant_mismatch_keeps_the_edge_fail_closed(
        make_daemon: DaemonFactory, sim: SimState, http: aiohttp.ClientSession) -> None:
    """After the replay guard failed the edge is fail-closed; a tenant mismatch keeps it so
    without calling the edge again."""
    daemon = await make_daemon(rule_packs=["edge"])
    await post_alerts(http, daemon, payload(alert("alert_replay_guard_unavailable")))
    await idle(daemon)
    assert sim.docs["/edge/admin/mode"] == {"mode": "FAIL_CLOSED"}
    assert sim.docs["/edge/admin/privileged-mutations/retries"] == {"state": "PAUSED"}
    calls = len(sim.calls)
    await post_alerts(http, daemon, payload(alert("alert_tenant_mismatch_spike")))
    await idle(daemon)
    assert len(sim.calls) == calls
