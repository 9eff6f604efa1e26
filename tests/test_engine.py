"""Containment semantics: levels only rise, retries, escalation, fail-closed, concurrency."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import asyncpg
import pytest
from structlog.testing import capture_logs

from examples.exchange import Faults
from responder.engine import reconciler as reconciler_module
from responder.store import levels as store_levels
from responder.store.locks import KEY_NS as KEY_LOCK_NS
from responder.store.locks import try_replica_name
from tests.conftest import (
    DaemonFactory,
    Exchange,
    fixture_bytes,
    idle,
    log_kinds,
    post_alerts,
    query,
    wait_for,
)


def alert(name: str, symbol: str | None = None, status: str = "firing",
          fingerprint: str | None = None, starts_at: str = "2026-11-23T05:32:58.1Z",
          **labels: str) -> dict[str, Any]:
    all_labels = {"alertname": name, "severity": "sev1", **labels}
    if symbol is not None:
        all_labels["symbol"] = symbol
    return {
        "status": status, "labels": all_labels, "annotations": {},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-23T06:00:00Z",
        "generatorURL": "", "fingerprint": fingerprint or f"{name}-{symbol}"[:64],
    }


def payload(*alerts: dict[str, Any], status: str = "firing") -> bytes:
    return json.dumps({"version": "4", "status": status, "receiver": "responder",
                       "groupKey": "{}", "truncatedAlerts": 0, "alerts": list(alerts)}).encode()


async def outcomes(dsn: str) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT control, key, body FROM action_log"
                                " WHERE kind = 'outcome' ORDER BY seq")
    finally:
        await conn.close()
    return [(r["control"], r["key"], json.loads(r["body"])["detail"]["status"]) for r in rows]


async def test_levels_only_rise(make_daemon: DaemonFactory, exchange: Exchange,
                                http: aiohttp.ClientSession, database: str) -> None:
    """After HARD_HALT, a rule asking CANCEL_ONLY for the same symbol records already contained."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "BTC-USD")))
    await idle(daemon)
    calls = len(exchange.state.calls)
    await post_alerts(http, daemon, payload(alert("LedgerInvariantViolation", "BTC-USD")))
    await idle(daemon)
    assert exchange.state.symbols == {"BTC-USD": "HARD_HALT"}
    assert [c.path for c in exchange.state.calls[calls:]] == ["/admin/withdrawals"]
    assert "already_contained" in await log_kinds(database)


async def test_resolved_alert_never_lowers(make_daemon: DaemonFactory, exchange: Exchange,
                                           http: aiohttp.ClientSession, database: str) -> None:
    """A resolved alert marks the incident resolved, containment held, and calls nothing."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    calls = len(exchange.state.calls)
    status, _ = await post_alerts(http, daemon, fixture_bytes("resolved-single.json"))
    assert status == 200
    await idle(daemon)
    assert len(exchange.state.calls) == calls
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY"}
    conn = await asyncpg.connect(database)
    try:
        incident = await conn.fetchrow("SELECT status FROM incidents")
        note = await conn.fetchval("SELECT body FROM action_log WHERE kind = 'alert_resolved'")
    finally:
        await conn.close()
    assert incident is not None
    assert incident["status"] == "resolved"
    assert "containment held" in note


async def test_resolved_before_firing_opens_nothing(make_daemon: DaemonFactory,
                                                    exchange: Exchange,
                                                    http: aiohttp.ClientSession,
                                                    database: str) -> None:
    """A resolved alert with no open incident is recorded and opens no incident."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("resolved-single.json"))
    await idle(daemon)
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM incidents") == 0
    finally:
        await conn.close()
    assert exchange.state.calls == []
    assert await log_kinds(database) == ["alert_received", "alert_resolved"]


async def test_transient_failures_are_retried_with_one_key(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """503s are retried under the deadline, every attempt with the same Idempotency-Key."""
    exchange.state.faults = Faults(fail_next=2, fail_status=503)
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "ETH-USD")))
    await idle(daemon)
    assert exchange.state.symbols == {"ETH-USD": "HARD_HALT"}
    assert [c.status for c in exchange.state.calls] == [503, 503, 200]
    assert len({c.idempotency_key for c in exchange.state.calls}) == 1
    assert await outcomes(database) == [("symbol-mode", "ETH-USD", "applied")]


async def test_failed_step_escalates(make_daemon: DaemonFactory, exchange: Exchange,
                                     http: aiohttp.ClientSession, database: str) -> None:
    """A step refused with a 4xx is not retried; the rule's on_failure step runs instead."""
    exchange.state.faults = Faults(fail_next=1, fail_status=409)
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "SOL-USD")))
    await idle(daemon)
    assert [c.status for c in exchange.state.calls] == [409, 200]
    assert exchange.state.global_mode == "HARD_HALT"  # 3.3's escalation
    assert await outcomes(database) == [("symbol-mode", "SOL-USD", "failed"),
                                        ("global-mode", "", "applied")]
    assert "escalation" in await log_kinds(database)


async def test_unreachable_target_fails_closed(make_daemon: DaemonFactory, exchange: Exchange,
                                               http: aiohttp.ClientSession,
                                               database: str) -> None:
    """When the escalation fails too: containment_failed, an error log and a metric."""
    exchange.state.faults = Faults(fail_next=10_000, fail_status=503)
    daemon = await make_daemon(step_deadline_s=0.5)
    with capture_logs() as logs:
        await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "ADA-USD")))
        await idle(daemon)
    assert await outcomes(database) == [("symbol-mode", "ADA-USD", "failed"),
                                        ("global-mode", "", "failed")]
    assert (await log_kinds(database))[-1] == "containment_failed"
    assert any(e["event"] == "containment failed" and e["log_level"] == "error" for e in logs)
    assert daemon.metrics.containment_failed.labels("split-brain")._value.get() == 1


async def test_one_key_at_a_time_different_keys_in_parallel(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
) -> None:
    """Work on one control key is serialised while different keys proceed together."""
    exchange.state.faults = Faults(delay_s=0.3)
    btc = "/admin/symbols/BTC-USD/mode"
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("LedgerInvariantViolation", "BTC-USD")))
    await wait_for(lambda: exchange.state.inflight.get(btc, 0) == 1, what="BTC call in flight")
    others = [alert("SplitBrainSuspected", f"X{i}-USD") for i in range(4)]
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "BTC-USD"), *others))
    await idle(daemon)
    btc_calls = [c.body["mode"] for c in exchange.state.calls if c.path == btc]
    assert btc_calls == ["CANCEL_ONLY", "HARD_HALT"]
    assert exchange.state.max_inflight[btc] == 1
    assert exchange.state.max_total_inflight >= 3


async def test_notify_only_rule_records_and_calls_nothing(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """A notify-only rule (api-alarms' throttles) opens an incident, is recorded and gets
    its evidence sealed, with no admin call."""
    daemon = await make_daemon(rule_packs=["api-alarms"])
    await post_alerts(http, daemon, payload(alert("ApiThrottling", severity="sev3")))
    await idle(daemon)
    assert exchange.state.calls == []
    assert "notify_only" in await log_kinds(database)
    await wait_for(lambda: _sealed(database))


async def _sealed(dsn: str) -> bool:
    return "evidence_sealed" in await log_kinds(dsn)


async def test_unmatched_alert_is_recorded_only(make_daemon: DaemonFactory, exchange: Exchange,
                                                http: aiohttp.ClientSession,
                                                database: str) -> None:
    """An alert no rule matches is still recorded in the action log."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("DiskFilling", "BTC-USD", severity="warning")))
    await idle(daemon)
    assert exchange.state.calls == []
    assert await log_kinds(database) == ["alert_received"]


async def test_read_back_mismatch_escalates(make_daemon: DaemonFactory, exchange: Exchange,
                                            http: aiohttp.ClientSession, database: str) -> None:
    """A target that answers 2xx but reads back a lower level is a failed step: escalate."""
    exchange.state.faults = Faults(read_lies=True)
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "DOT-USD")))
    await idle(daemon)
    assert await outcomes(database) == [("symbol-mode", "DOT-USD", "failed"),
                                        ("global-mode", "", "failed")]
    assert (await log_kinds(database))[-1] == "containment_failed"


async def test_verified_levels_are_listed_as_verified(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
) -> None:
    """A level whose read-back matched is held as verified."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "DOT-USD")))
    await idle(daemon)
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT verified FROM control_levels") is True
    finally:
        await conn.close()


async def test_drift_is_repaired(make_daemon: DaemonFactory, exchange: Exchange,
                                 http: aiohttp.ClientSession, database: str) -> None:
    """After the exchange forgets its state, a reconcile pass re-applies every held level."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "ETH-USD")))
    await idle(daemon)
    exchange.state.forget()
    assert daemon.reconciler is not None
    with capture_logs() as logs:
        report = await daemon.reconciler.pass_once()
    assert (report.checked, report.corrected, report.failed) == (3, 3, 0)
    assert exchange.state.withdrawals == "HALTED"
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY", "ETH-USD": "HARD_HALT"}
    kinds = await log_kinds(database)
    assert kinds.count("drift_detected") == kinds.count("drift_corrected") == 3
    assert sum(e["log_level"] == "error" and "drift corrected" in e["event"] for e in logs) == 3
    again = await daemon.reconciler.pass_once()
    assert (again.checked, again.corrected) == (3, 0)


async def test_a_reconcile_pass_reads_the_held_levels_once_not_once_a_key(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pass over keys the targets still hold asks the store for their levels in the one
    statement that lists them: after a storm, thousands of contained keys would otherwise
    cost a statement (and a commit) each on every pass. Only a key found below its level is
    read again, under its lock, before the repair."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "ETH-USD")))
    await idle(daemon)
    assert daemon.reconciler is not None
    reads: list[tuple[str, str]] = []
    one_key = store_levels.held_level

    async def counted(pool: Any, control: str, key: str) -> Any:
        reads.append((control, key))
        return await one_key(pool, control, key)

    monkeypatch.setattr(reconciler_module, "held_level", counted)
    report = await daemon.reconciler.pass_once()
    assert (report.checked, report.corrected) == (3, 0)
    assert reads == []
    exchange.state.forget()
    report = await daemon.reconciler.pass_once()
    assert (report.checked, report.corrected) == (3, 3)
    assert sorted(reads) == [("symbol-mode", "BTC-USD"), ("symbol-mode", "ETH-USD"),
                             ("withdrawals", "")]


async def test_drift_repair_waits_for_a_key_being_changed_elsewhere(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """A key another replica holds a live claim on may be on its way up: repairing it to
    the held level now could land after that raise and lower it. It waits a pass."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    replica_b = await asyncpg.connect(database)  # alive: its session holds its name
    assert await try_replica_name(replica_b, "replica-b")
    await query(database,
                "INSERT INTO steps (incident_id, kind, position, control, key, level, rank,"
                " idempotency_key, claimed_by, lease_until, claims)"
                " SELECT id, 'step', 9, 'symbol-mode', 'BTC-USD', 'HARD_HALT', 3, 'elsewhere',"
                " 'replica-b', now() + interval '1 minute', 1 FROM incidents LIMIT 1")
    exchange.state.forget()
    assert daemon.reconciler is not None
    report = await daemon.reconciler.pass_once()
    assert (report.corrected, report.busy) == (1, 1)  # withdrawals now; the symbol later
    assert exchange.state.withdrawals == "HALTED"
    assert "BTC-USD" not in exchange.state.symbols
    await query(database, "UPDATE steps SET status = 'failed' WHERE idempotency_key"
                          " = 'elsewhere'")
    report = await daemon.reconciler.pass_once()
    assert (report.corrected, report.busy) == (1, 0)
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY"}
    await replica_b.close()


async def test_reconciler_runs_on_its_interval(make_daemon: DaemonFactory, exchange: Exchange,
                                               http: aiohttp.ClientSession) -> None:
    """With an interval set, drift is repaired without anyone asking."""
    daemon = await make_daemon(reconcile_interval_s=0.2)
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "ETH-USD")))
    await idle(daemon)
    exchange.state.forget()
    await wait_for(lambda: exchange.state.symbols.get("ETH-USD") == "HARD_HALT",
                   what="drift repair")


async def test_alert_storm_trips_the_guard(make_daemon: DaemonFactory, exchange: Exchange,
                                           http: aiohttp.ClientSession, database: str) -> None:
    """500 split-brain alerts on 500 symbols: 20 per-symbol halts, then one global HARD_HALT."""
    daemon = await make_daemon()
    alerts = [alert("SplitBrainSuspected", f"S{i}-USD") for i in range(500)]
    for chunk in range(0, 500, 100):
        status, _ = await post_alerts(http, daemon, payload(*alerts[chunk:chunk + 100]))
        assert status == 200
    await idle(daemon, timeout_s=60)
    symbol_calls = [c for c in exchange.state.calls if c.path.startswith("/admin/symbols/")]
    assert len(symbol_calls) == 20
    assert exchange.state.global_mode == "HARD_HALT"
    assert sum(c.path == "/admin/global/mode" for c in exchange.state.calls) == 1
    kinds = await log_kinds(database)
    assert kinds.count("storm_guard_tripped") == 480
    assert kinds.count("alert_received") == 500


async def test_an_unclaimed_higher_step_does_not_stand_in_for_a_lower_one(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """A higher step on the key that no one has claimed yet has not reached the target: the
    lower step is applied, not closed as already contained (had the higher one then failed,
    the key would have stayed open)."""
    daemon = await make_daemon(sweep_interval_s=60)
    conn = await asyncpg.connect(database)
    try:
        incident = await conn.fetchval(
            "INSERT INTO incidents (rule_id, scope, severity, status, rules_hash)"
            " VALUES ('split-brain', 'symbol=BTC-USD', 'sev1', 'open', 'x') RETURNING id")
        await conn.execute(
            "INSERT INTO steps (incident_id, kind, position, control, key, level, rank,"
            " idempotency_key) VALUES ($1, 'step', 0, 'symbol-mode', 'BTC-USD', 'HARD_HALT', 3,"
            " 'planned-elsewhere')", incident)
    finally:
        await conn.close()
    status, _ = await post_alerts(http, daemon, payload(alert("LedgerInvariantViolation",
                                                              "BTC-USD")))
    assert status == 200
    await wait_for(lambda: exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY",
                   what="the lower step applied")

    async def lower_outcome() -> bool:  # recorded after the read-back, so a moment later
        return any(json.loads(b)["detail"]["level"] == "CANCEL_ONLY"
                   for b in await _bodies(database, "outcome"))

    await wait_for(lower_outcome, what="the lower step's outcome")
    outcomes = [json.loads(b)["detail"] for b in await _bodies(database, "outcome")]
    assert {o["status"] for o in outcomes if o["level"] == "CANCEL_ONLY"} == {"applied"}


async def _bodies(dsn: str, kind: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["body"] for r in await conn.fetch(
            "SELECT body FROM action_log WHERE kind = $1 ORDER BY seq", kind)]
    finally:
        await conn.close()


async def _incident_states(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["status"] for r in await conn.fetch("SELECT status FROM incidents ORDER BY id")]
    finally:
        await conn.close()


async def test_an_incident_resolves_with_its_last_firing_alert(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """Two alerts of one incident (two ledger checkers on BTC-USD): the first resolving
    leaves the incident open; the second resolving closes it. Nothing is lowered."""
    daemon = await make_daemon()
    first = alert("LedgerInvariantViolation", "BTC-USD", fingerprint="ledger-a", checker="a")
    second = alert("LedgerInvariantViolation", "BTC-USD", fingerprint="ledger-b", checker="b")
    await post_alerts(http, daemon, payload(first, second))
    await idle(daemon)
    assert await _incident_states(database) == ["open"]
    await post_alerts(http, daemon, payload({**first, "status": "resolved"}, status="resolved"))
    await idle(daemon)
    assert await _incident_states(database) == ["open"]
    notes = [json.loads(b)["detail"]["note"] for b in await _bodies(database, "alert_resolved")]
    assert notes == ["alert resolved; other alerts of the incident still fire"]
    await post_alerts(http, daemon, payload({**second, "status": "resolved"}, status="resolved"))
    await idle(daemon)
    assert await _incident_states(database) == ["resolved"]
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY"}


async def test_firing_then_resolved_in_one_payload_resolves(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    daemon = await make_daemon()
    firing = alert("LedgerInvariantViolation", "ETH-USD", fingerprint="ledger-e")
    await post_alerts(http, daemon, payload(firing, {**firing, "status": "resolved"}))
    await idle(daemon)
    assert await _incident_states(database) == ["resolved"]
    assert exchange.state.symbols == {"ETH-USD": "CANCEL_ONLY"}  # containment held


async def test_a_new_incidents_first_step_is_claimed_while_recorded(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """The transaction that records a new incident also claims its first step for this
    replica, so the call follows the commit with no claim of its own: the step ends with
    one claim, not two. A later step on the same incident is claimed the usual way."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("LedgerInvariantViolation", "BTC-USD")))
    await idle(daemon)
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY"}
    rows = await query(database, "SELECT control, status, claims, claimed_by FROM steps"
                                 " ORDER BY control DESC")
    assert [(r["control"], r["status"], r["claims"]) for r in rows] == [
        ("withdrawals", "done", 1), ("symbol-mode", "done", 1)]
    assert {r["claimed_by"] for r in rows} == {daemon.replica_id}


async def _claims(dsn: str) -> dict[str, int]:
    rows = await query(dsn, "SELECT control, claims FROM steps WHERE status = 'done'")
    return {r["control"]: r["claims"] for r in rows}


async def test_an_early_claim_is_checked_again_when_its_key_was_touched_meanwhile(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """Between recording and running, something else took the key here (a person's change,
    a drift repair, another step): the step is claimed and its key read again before the
    call, not run on what was true when it was recorded."""
    daemon = await make_daemon()
    assert daemon.state is not None
    lock = daemon.state.executor.key_lock("withdrawals", "")
    await lock.acquire()

    async def someone_else() -> None:
        async with lock:
            await asyncio.sleep(0)

    intruder = asyncio.create_task(someone_else())
    await asyncio.sleep(0)  # queued for the key before the step is
    status, _ = await post_alerts(http, daemon, payload(alert("LedgerInvariantViolation",
                                                              "BTC-USD")))
    assert status == 200
    lock.release()
    await intruder
    await idle(daemon)
    assert exchange.state.withdrawals == "HALTED"
    assert [c.path for c in exchange.state.calls].count("/admin/withdrawals") == 1
    assert (await _claims(database))["withdrawals"] == 2  # the early claim, then its check


async def test_a_claim_meeting_a_held_key_lock_tries_again_soon(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """A key lock held briefly (here by hand; in practice a batch recording a step on the
    key) delays a claim by milliseconds, not until the next sweep."""
    daemon = await make_daemon(sweep_interval_s=60)
    holder = await asyncpg.connect(database)
    try:
        await holder.execute("SELECT pg_advisory_lock($1, hashtext('symbol-mode/BTC-USD'))",
                             KEY_LOCK_NS)
        status, _ = await post_alerts(http, daemon, payload(alert("LedgerInvariantViolation",
                                                                  "BTC-USD")))
        assert status == 200
        await asyncio.sleep(0.15)
        assert "BTC-USD" not in exchange.state.symbols
        await holder.execute("SELECT pg_advisory_unlock($1, hashtext('symbol-mode/BTC-USD'))",
                             KEY_LOCK_NS)
        await wait_for(lambda: exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY",
                       timeout_s=3, what="the symbol step, claimed once the lock was free")
    finally:
        await holder.close()
