"""Drift repair obeys the automation mode, and an unreadable target is drift.

A person who changed a level on the target during break-glass, or while automation is
paused, keeps that change; dry-run records what it would repair. A target that restarted,
forgot, and answers 404 gets the held level again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from examples.admin_sim import STATE, SimState, make_app
from responder.daemon import Daemon
from tests.conftest import (
    ADMIN_TOKEN,
    DaemonFactory,
    Exchange,
    fixture_bytes,
    free_port,
    idle,
    post_alerts,
    wait_for,
)
from tests.test_engine import alert, payload
from tests.test_modes import call, records

TOKEN = "test-packs-admin-token-cdef"

NOT_ENFORCING: dict[str, tuple[str, str, Any]] = {
    "paused": ("POST", "/v1/mode", {"mode": "paused", "reason": "maintenance"}),
    "break_glass": ("POST", "/v1/break-glass", {"ttl_s": 600, "reason": "hands on"}),
}


async def contained(make_daemon: DaemonFactory, http: aiohttp.ClientSession) -> Daemon:
    daemon = await make_daemon(reconcile_interval_s=0)
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    return daemon


def changes(exchange: Exchange) -> list[str]:
    return [c.path for c in exchange.state.calls if c.method != "GET"]


@pytest.mark.parametrize("how", list(NOT_ENFORCING))
async def test_drift_is_left_alone_when_a_person_has_the_controls(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    database: str, how: str,
) -> None:
    """Paused or during break-glass, a level a person lowered on the target stays lowered:
    the reconciler calls nothing and records no repair."""
    daemon = await contained(make_daemon, http)
    method, path, body = NOT_ENFORCING[how]
    assert (await call(http, daemon, method, path, ADMIN_TOKEN, body))[0] == 200
    exchange.state.withdrawals = "OPEN"  # a person, directly on the target
    before = changes(exchange)
    assert daemon.reconciler is not None
    report = await daemon.reconciler.pass_once()
    assert report.held_off and report.corrected == 0
    assert changes(exchange) == before
    assert exchange.state.withdrawals == "OPEN"
    assert await records(database, "drift_detected") == []


async def test_dry_run_records_what_drift_repair_would_do(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    database: str,
) -> None:
    """In dry-run the reconciler records "would repair" once per finding and calls nothing."""
    daemon = await contained(make_daemon, http)
    await call(http, daemon, "POST", "/v1/mode", ADMIN_TOKEN,
               {"mode": "dry_run", "reason": "rehearsal"})
    exchange.state.withdrawals = "OPEN"
    before = changes(exchange)
    assert daemon.reconciler is not None
    first = await daemon.reconciler.pass_once()
    second = await daemon.reconciler.pass_once()
    assert (first.would_repair, second.would_repair, first.corrected) == (1, 1, 0)
    assert changes(exchange) == before and exchange.state.withdrawals == "OPEN"
    [would] = await records(database, "drift_would_repair")
    assert (would["control"], would["detail"]["held"], would["detail"]["observed"]) == (
        "withdrawals", "HALTED", "OPEN")
    assert would["detail"]["request"]["path"] == "/admin/withdrawals"

    await call(http, daemon, "POST", "/v1/mode", ADMIN_TOKEN,
               {"mode": "enforce", "reason": "done"})
    assert (await daemon.reconciler.pass_once()).corrected == 1
    assert exchange.state.withdrawals == "HALTED"


class Sim:
    """The packs simulator on a fixed port, restartable: a restart forgets every level."""

    def __init__(self) -> None:
        self.port = free_port()
        self.runner: web.AppRunner | None = None
        self.state: SimState | None = None

    async def start(self) -> None:
        app = make_app([TOKEN])
        self.state = app[STATE]
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sim]:
    sim = Sim()
    await sim.start()
    monkeypatch.setenv("RESPONDER_GATEWAY_URL", f"http://127.0.0.1:{sim.port}/gateway")
    monkeypatch.setenv("RESPONDER_GATEWAY_TOKEN", TOKEN)
    yield sim
    await sim.stop()


POLICY = "/gateway/admin/retrieval/policy"


async def test_a_target_that_forgot_and_answers_404_is_contained_again(
    make_daemon: DaemonFactory, sim: Sim, http: aiohttp.ClientSession, database: str,
) -> None:
    """After the target restarts, reads answer 404: the held level is applied again and
    read back; when the target then refuses it, the failed repair is recorded and paged
    (error log and the drift metric the shipped alert watches)."""
    daemon = await make_daemon(rule_packs=["gateway-ledger"], reconcile_interval_s=0)
    await post_alerts(http, daemon, payload(alert("LeakageCanaryTriggered", tenant="acme")))
    await idle(daemon)
    assert sim.state is not None and sim.state.docs[POLICY] == {"policy": "DENY_ALL"}

    await sim.stop()
    await sim.start()  # forgets: every read of a control answers 404
    assert sim.state is not None and POLICY not in sim.state.docs
    assert daemon.reconciler is not None
    report = await daemon.reconciler.pass_once()
    assert (report.unreadable, report.corrected) == (1, 1)
    assert sim.state.docs[POLICY] == {"policy": "DENY_ALL"}
    [fixed] = await records(database, "drift_corrected")
    assert fixed["control"] == "retrieval-policy" and fixed["detail"]["observed"] is None

    await sim.stop()
    await sim.start()
    assert sim.state is not None
    sim.state.failing.add(POLICY)
    report = await daemon.reconciler.pass_once()
    assert report.failed == 1
    [failed] = await records(database, "drift_repair_failed")
    assert failed["control"] == "retrieval-policy"
    assert daemon.metrics.drift.labels("retrieval-policy", "failed")._value.get() == 1


async def test_the_running_reconciler_re_applies_after_the_target_restarts(
    make_daemon: DaemonFactory, sim: Sim, http: aiohttp.ClientSession, database: str,
) -> None:
    """The daemon's own reconciler loop, not a pass called by the test, sees the restarted
    target's 404 and re-applies the held level."""
    daemon = await make_daemon(rule_packs=["gateway-ledger"], reconcile_interval_s=0.2)
    await post_alerts(http, daemon, payload(alert("LeakageCanaryTriggered", tenant="acme")))
    await idle(daemon)
    await sim.stop()
    await sim.start()
    await wait_for(lambda: sim.state is not None and POLICY in sim.state.docs, timeout_s=15,
                   what="the held level applied again on the restarted target")
    assert sim.state is not None and sim.state.docs[POLICY] == {"policy": "DENY_ALL"}
    await wait_for(lambda: _seen(database, "drift_corrected"), what="drift_corrected")


async def _seen(dsn: str, kind: str) -> bool:
    return bool(await records(dsn, kind))
