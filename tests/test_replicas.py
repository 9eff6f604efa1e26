"""Two daemon processes on one PostgreSQL: each step is called once in effect, a killed
replica's step is taken over with its key, and leader-only work runs on one replica."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from examples.exchange import Faults
from tests.conftest import (
    ADMIN_TOKEN,
    ROOT,
    VIEWER_TOKEN,
    DaemonFactory,
    Exchange,
    Proc,
    fixture_bytes,
    idle,
    post_alerts,
    wait_for,
)
from tests.test_modes import call as api_call
from tests.test_outbox import Receiver, serve
from tests.test_process import daemon_env, kill, post, spawn


def replica_env(database: str, rules_dir: Path, name: str, **extra: str) -> dict[str, str]:
    return daemon_env(database, rules_dir, RESPONDER_REPLICA_ID=name,
                      RESPONDER_STEP_LEASE_S="2", RESPONDER_STEP_DEADLINE_S="30",
                      RESPONDER_LEADER_CHECK_S="0.5", **extra)


async def rows(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def no_pending(dsn: str) -> bool:
    return not await rows(dsn, "SELECT 1 FROM steps WHERE status = 'pending'")


async def log_details(dsn: str, kind: str) -> list[dict[str, Any]]:
    found = await rows(dsn, "SELECT body FROM action_log WHERE kind = $1 ORDER BY seq", kind)
    return [json.loads(r["body"])["detail"] for r in found]


def audit_verify(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "responder", "audit", "verify"],
                          env={"PATH": "/usr/bin:/bin", "RESPONDER_DATABASE_URL": dsn},
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def calls_by_path(exchange: Exchange) -> dict[str, list[Any]]:
    by_path: dict[str, list[Any]] = {}
    for call in exchange.state.calls:
        by_path.setdefault(call.path, []).append(call)
    return by_path


async def start_pair(tmp_path: Path, procs: list[Proc], database: str, rules_dir: Path,
                     **extra: str) -> dict[str, Proc]:
    a, b = await asyncio.gather(
        spawn(tmp_path, procs, replica_env(database, rules_dir, "replica-a", **extra)),
        spawn(tmp_path, procs, replica_env(database, rules_dir, "replica-b", **extra)))
    return {"replica-a": a, "replica-b": b}


async def test_same_alert_at_both_replicas_calls_each_step_once(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """Posted to both replicas at once, each admin call is made exactly once, not replayed."""
    exchange.state.faults = Faults(delay_s=0.5)
    pair = await start_pair(tmp_path, procs, database, rules_dir)
    body = fixture_bytes("firing-single.json")
    statuses = await asyncio.gather(*(post(http, p.port, body) for p in pair.values()))
    assert statuses == [200, 200]
    await wait_for(lambda: no_pending(database), timeout_s=20, what="every step closed")
    await asyncio.sleep(1.5)  # several sweeps of both replicas: none may call again
    by_path = calls_by_path(exchange)
    assert set(by_path) == {"/admin/withdrawals", "/admin/symbols/BTC-USD/mode"}
    for path, calls in by_path.items():
        assert len(calls) == 1, (path, calls)
        assert calls[0].applied
    outcomes = await log_details(database, "outcome")
    assert len(outcomes) == 2
    assert {o["replica"] for o in outcomes} <= set(pair)
    assert await log_details(database, "step_taken_over") == []
    verified = await asyncio.to_thread(audit_verify, database)
    assert verified.returncode == 0, verified.stderr


async def test_replica_killed_mid_call_is_taken_over_with_the_same_key(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """SIGKILL mid-call: the other replica completes the step once the killed replica's
    session has ended, with the same Idempotency-Key, so the target applied every change
    once."""
    exchange.state.faults = Faults(delay_s=1.5)
    pair = await start_pair(tmp_path, procs, database, rules_dir)
    body = fixture_bytes("firing-single.json")
    statuses = await asyncio.gather(*(post(http, p.port, body) for p in pair.values()))
    assert statuses == [200, 200]
    await wait_for(lambda: exchange.state.total_inflight > 0, what="a call in flight")
    claimed = await rows(database, "SELECT id, claimed_by, idempotency_key FROM steps"
                                   " WHERE status = 'pending' AND claimed_by IS NOT NULL")
    assert len(claimed) == 1
    victim_name = claimed[0]["claimed_by"]
    [survivor_name] = set(pair) - {victim_name}
    await kill(pair[victim_name])
    await wait_for(lambda: no_pending(database), timeout_s=30, what="every step closed")

    by_path = calls_by_path(exchange)
    assert set(by_path) == {"/admin/withdrawals", "/admin/symbols/BTC-USD/mode"}
    keys = {r["idempotency_key"] for r in await rows(database,
                                                     "SELECT idempotency_key FROM steps")}
    for path, calls in by_path.items():
        assert sum(c.applied for c in calls) == 1, (path, calls)
        assert len({c.idempotency_key for c in calls}) == 1
        assert calls[0].idempotency_key in keys
    killed_key = claimed[0]["idempotency_key"]
    replayed = [c for c in exchange.state.calls if c.idempotency_key == killed_key]
    assert [c.applied for c in replayed] == [True, False]  # the orphaned call, then the replay

    [takeover] = await log_details(database, "step_taken_over")
    assert takeover["from"] == victim_name
    assert takeover["by"] == survivor_name
    assert takeover["idempotency_key"] == killed_key
    outcomes = await log_details(database, "outcome")
    assert Counter(o["idempotency_key"] for o in outcomes) == Counter(keys)
    assert {o["replica"] for o in outcomes} == {survivor_name}
    verified = await asyncio.to_thread(audit_verify, database)
    assert verified.returncode == 0, verified.stderr
    assert "action log OK" in verified.stdout


async def metric(http: aiohttp.ClientSession, proc: Proc, name: str) -> float | None:
    async with http.get(f"http://127.0.0.1:{proc.port}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_reconciler_leads_on_one_replica_and_moves_when_it_dies(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """Exactly one replica runs the drift reconciler; SIGKILL it and the other takes over
    and repairs drift; each bundle reaches the sink once although both run the outbox."""
    sink = Receiver()
    url, runner = await serve(sink)
    try:
        sinks = json.dumps([{"name": "hook", "kind": "webhook", "url": url}])
        pair = await start_pair(tmp_path, procs, database, rules_dir,
                                RESPONDER_RECONCILE_INTERVAL_S="0.3", RESPONDER_SINKS=sinks)
        leader = 'responder_leader{role="reconciler"}'

        async def leaders() -> list[str]:
            values = {n: await metric(http, p, leader) for n, p in pair.items()
                      if p.popen.poll() is None}
            return [n for n, v in values.items() if v == 1.0]

        async def one_leader() -> bool:
            return len(await leaders()) == 1

        await wait_for(one_leader, what="one reconciler leader")
        for _ in range(5):  # and it stays one
            assert len(await leaders()) == 1
            await asyncio.sleep(0.2)

        body = fixture_bytes("firing-single.json")
        assert [await post(http, p.port, body) for p in pair.values()] == [200, 200]
        await wait_for(lambda: no_pending(database), timeout_s=20, what="every step closed")

        async def delivered() -> bool:
            pending = await rows(database, "SELECT 1 FROM outbox WHERE status <> 'delivered'")
            return not pending and bool(await rows(database, "SELECT 1 FROM outbox"
                                                   " WHERE kind = 'bundle'"))

        # Both replicas run the outbox: rows are claimed, so each bundle arrives once.
        await wait_for(delivered, timeout_s=20, what="every bundle delivered")
        keys = [k for k, kind, _ in sink.accepted if kind == "bundle"]
        assert keys and max(Counter(keys).values()) == 1

        [first] = await leaders()
        await kill(pair[first])
        [other] = set(pair) - {first}
        await wait_for(lambda: _is_leader(http, pair[other], leader), timeout_s=15,
                       what="the surviving replica to lead")
        exchange.state.forget()  # the exchange restarted and lost its levels: drift
        await wait_for(lambda: exchange.state.withdrawals == "HALTED", timeout_s=15,
                       what="drift repaired by the new leader")
        assert len(await log_details(database, "drift_corrected")) >= 1

    finally:
        await runner.cleanup()


async def _is_leader(http: aiohttp.ClientSession, proc: Proc, name: str) -> bool:
    return await metric(http, proc, name) == 1.0


async def test_a_mode_switched_on_one_replica_holds_on_the_other(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """Pausing automation through replica a pauses replica b too: b records, calls nothing."""
    a = await make_daemon(replica_id="replica-a")
    b = await make_daemon(replica_id="replica-b")
    status, _ = await api_call(http, a, "POST", "/v1/mode", ADMIN_TOKEN,
                           {"mode": "paused", "reason": "maintenance"})
    assert status == 200

    async def b_paused() -> bool:
        _, answer = await api_call(http, b, "GET", "/v1/mode", VIEWER_TOKEN)
        return bool(answer["mode"] == "paused")

    await wait_for(b_paused, timeout_s=5, what="replica b to see the pause")
    await post_alerts(http, b, fixture_bytes("firing-single.json"))
    await idle(b)
    assert exchange.state.calls == []


async def test_a_replica_name_is_never_shared(
    make_daemon: DaemonFactory, tmp_path: Path,
) -> None:
    """Two live processes configured with one name: the second takes a name derived from it,
    so their claims still exclude each other. The data directory remembers the last name."""
    first = await make_daemon(replica_id="replica-x")
    second = await make_daemon(replica_id="replica-x")
    assert first.replica_id == "replica-x"
    assert second.replica_id.startswith("replica-x-")
    assert (tmp_path / "data" / "replica-id").read_text().strip() == second.replica_id
