"""Automatic calls happen only in enforce, and what fired meanwhile is contained once
automation resumes."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from examples.exchange import Faults
from tests.conftest import (
    ADMIN_TOKEN,
    DaemonFactory,
    Exchange,
    idle,
    post_alerts,
    query,
    wait_for,
)
from tests.test_modes import call, ledger, records

STOPS: dict[str, tuple[tuple[str, str, Any], tuple[str, str, Any]]] = {
    "paused": (("POST", "/v1/mode", {"mode": "paused", "reason": "maintenance"}),
               ("POST", "/v1/mode", {"mode": "enforce", "reason": "done"})),
    "dry_run": (("POST", "/v1/mode", {"mode": "dry_run", "reason": "rehearsal"}),
                ("POST", "/v1/mode", {"mode": "enforce", "reason": "done"})),
    "break_glass": (("POST", "/v1/break-glass", {"ttl_s": 600, "reason": "hands on"}),
                    ("DELETE", "/v1/break-glass", {"reason": "hands off"})),
}


@pytest.mark.parametrize("how", list(STOPS))
async def test_a_sev1_fired_while_not_enforcing_is_contained_when_enforce_resumes(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    database: str, how: str,
) -> None:
    """Fired (and repeated) while not enforcing: nothing is called; once automation acts
    again, the still-firing incident is planned and contained, recorded as replanned."""
    daemon = await make_daemon()
    (method, path, body), (back_method, back_path, back_body) = STOPS[how]
    assert (await call(http, daemon, method, path, ADMIN_TOKEN, body))[0] == 200
    alert = ledger("fired-while-stopped")
    await post_alerts(http, daemon, alert)
    await post_alerts(http, daemon, alert)  # Alertmanager's repeat: a re-delivery
    await idle(daemon)
    assert exchange.state.calls == []

    assert (await call(http, daemon, back_method, back_path, ADMIN_TOKEN, back_body))[0] == 200
    await wait_for(lambda: exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY",
                   what="the symbol contained after resuming")
    await idle(daemon)
    assert exchange.state.withdrawals == "HALTED"
    [replanned] = await records(database, "incident_replanned")
    assert replanned["detail"]["why"] == "automation resumed"
    assert len(replanned["detail"]["steps"]) == 2


async def test_a_resolved_incident_is_not_contained_on_resume(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    database: str,
) -> None:
    """Only alerts that still fire are contained when automation resumes."""
    daemon = await make_daemon()
    await call(http, daemon, "POST", "/v1/mode", ADMIN_TOKEN,
               {"mode": "paused", "reason": "maintenance"})
    firing = ledger("fired-then-resolved")
    await post_alerts(http, daemon, firing)
    await post_alerts(http, daemon, firing.replace(b'"status": "firing"', b'"status": "resolved"'))
    await idle(daemon)
    [incident] = await query(database, "SELECT status FROM incidents")
    assert incident["status"] == "resolved"
    await call(http, daemon, "POST", "/v1/mode", ADMIN_TOKEN, {"mode": "enforce", "reason": "x"})
    await call(http, daemon, "GET", "/v1/mode", ADMIN_TOKEN)
    await idle(daemon)
    assert exchange.state.calls == []
    assert await records(database, "incident_replanned") == []


async def test_a_step_queued_before_a_pause_waits_for_enforce(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
) -> None:
    """Recorded in enforce, paused while its first step is in flight: the second step is
    not called while paused, and runs once enforce resumes."""
    exchange.state.faults = Faults(delay_s=1.0)
    daemon = await make_daemon()
    await post_alerts(http, daemon, ledger("paused-mid-incident"))
    await wait_for(lambda: exchange.state.total_inflight > 0, what="the first call in flight")
    await call(http, daemon, "POST", "/v1/mode", ADMIN_TOKEN,
               {"mode": "paused", "reason": "stop"})
    assert daemon.state is not None
    await wait_for(lambda: daemon.state is not None and not daemon.state.executor.inflight,
                   what="the incident task to stop")
    assert [c.path for c in exchange.state.calls] == ["/admin/withdrawals"]
    await call(http, daemon, "POST", "/v1/mode", ADMIN_TOKEN, {"mode": "enforce", "reason": "go"})
    await wait_for(lambda: exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY",
                   what="the second step after resuming")
