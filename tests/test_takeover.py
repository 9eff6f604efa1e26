"""A survivor takes a killed replica's steps over when the killed replica's database
session ends, not when its lease runs out; a replica whose session was ended while it was
calling is fenced out (docs/takeover.md)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from examples.exchange import Faults
from responder.store.claims import let_go
from responder.store.locks import REPLICA_NS as LOCK_NS
from tests.conftest import Exchange, Proc, fixture_bytes, wait_for
from tests.test_process import daemon_env, kill, post, spawn
from tests.test_replicas import calls_by_path, log_details, no_pending, rows

PATHS = {"/admin/withdrawals", "/admin/symbols/BTC-USD/mode"}

TERMINATE_AND_HOLD_SQL = """
SELECT pg_terminate_backend(l.pid), pg_advisory_lock($1, hashtext($2))
FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::oid
  AND l.objid = hashtext($2)::oid AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
"""End the session holding a replica's name and hold the name at once in this session
(the lock wait ends the moment that backend exits), so the replica cannot take it back."""


async def start_pair(tmp_path: Path, procs: list[Proc], database: str, rules_dir: Path,
                     **extra: str) -> dict[str, Proc]:
    """Two replicas whose step leases (600 s) no test here can pass by waiting out, each
    with a data directory of its own (two starting on one race to create its signing key)."""
    def env(name: str) -> dict[str, str]:
        return daemon_env(database, rules_dir, RESPONDER_REPLICA_ID=name,
                          RESPONDER_STEP_LEASE_S="600", RESPONDER_STEP_DEADLINE_S="30",
                          RESPONDER_LEADER_CHECK_S="0.5",
                          RESPONDER_DATA_DIR=str(tmp_path / name), **extra)

    a, b = await asyncio.gather(spawn(tmp_path, procs, env("replica-a")),
                                spawn(tmp_path, procs, env("replica-b")))
    return {"replica-a": a, "replica-b": b}


async def claimed_step(database: str) -> asyncpg.Record:
    [claimed] = await rows(database, "SELECT id, claimed_by, idempotency_key, control FROM"
                                     " steps WHERE status = 'pending' AND claimed_by IS NOT NULL")
    return claimed


async def outcomes_in_order(database: str) -> list[dict[str, Any]]:
    found = await rows(database, "SELECT body FROM action_log WHERE kind = 'outcome'"
                                 " ORDER BY seq")
    return [json.loads(r["body"]) for r in found]


def assert_single_effect(exchange: Exchange) -> None:
    """Every admin path applied once, and all its calls carried one key."""
    by_path = calls_by_path(exchange)
    assert set(by_path) == PATHS
    for path, calls in by_path.items():
        assert sum(c.applied for c in calls) == 1, (path, calls)
        assert len({c.idempotency_key for c in calls}) == 1, (path, calls)


async def test_a_killed_replicas_step_is_taken_over_before_its_lease_runs_out(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """SIGKILL mid-call with a 600 s lease: the survivor still completes the incident,
    with the same Idempotency-Key, steps in position order, each change applied once."""
    exchange.state.faults = Faults(delay_s=1.0)
    pair = await start_pair(tmp_path, procs, database, rules_dir)
    victim = pair["replica-a"]
    assert await post(http, victim.port, fixture_bytes("firing-single.json")) == 200
    await wait_for(lambda: exchange.state.total_inflight > 0, what="a call in flight")
    claimed = await claimed_step(database)
    assert claimed["claimed_by"] == "replica-a"
    await kill(victim)
    await wait_for(lambda: no_pending(database), timeout_s=60, what="every step closed")

    assert_single_effect(exchange)
    replayed = [c.applied for c in exchange.state.calls
                if c.idempotency_key == claimed["idempotency_key"]]
    assert replayed == [True, False]  # the orphaned call, then the survivor's, same key
    [takeover] = await log_details(database, "step_taken_over")
    assert (takeover["from"], takeover["by"]) == ("replica-a", "replica-b")
    assert takeover["idempotency_key"] == claimed["idempotency_key"]
    outcomes = await outcomes_in_order(database)
    assert [o["control"] for o in outcomes] == ["withdrawals", "symbol-mode"]
    assert {o["detail"]["replica"] for o in outcomes} == {"replica-b"}


async def test_a_replica_whose_name_session_ends_mid_call_is_fenced_out(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """The server ends a live replica's name session while it calls (pg_terminate_backend)
    and its steps are handed over: it stops, its late outcome is not recorded, the
    survivor completes the incident with the same key, and each change lands once."""
    exchange.state.faults = Faults(delay_s=1.5)
    pair = await start_pair(tmp_path, procs, database, rules_dir)
    fenced = pair["replica-a"]
    assert await post(http, fenced.port, fixture_bytes("firing-single.json")) == 200
    await wait_for(lambda: exchange.state.total_inflight > 0, what="a call in flight")
    claimed = await claimed_step(database)
    assert claimed["claimed_by"] == "replica-a"

    # Play the survivor's hand-over by hand, holding replica-a's name meanwhile, so that
    # replica-a, alive, cannot take its name back until the survivor has taken over.
    admin = await asyncpg.connect(database)
    try:
        assert await admin.fetch(TERMINATE_AND_HOLD_SQL, LOCK_NS, "replica-a")
        assert await let_go(admin, "replica-a") == 1
        await wait_for(lambda: no_pending(database), timeout_s=60, what="every step closed")
        await asyncio.sleep(2.0)  # past the fenced call's answer: its outcome must not land
    finally:
        await admin.close()  # replica-a may hold its name again
    await asyncio.sleep(1.5)  # and, holding it, calls nothing more
    assert fenced.popen.poll() is None  # alive all along: fenced, not dead

    assert_single_effect(exchange)
    [takeover] = await log_details(database, "step_taken_over")
    assert (takeover["from"], takeover["by"]) == ("replica-a", "replica-b")
    assert takeover["idempotency_key"] == claimed["idempotency_key"]
    outcomes = await outcomes_in_order(database)
    assert [o["control"] for o in outcomes] == ["withdrawals", "symbol-mode"]
    assert Counter(o["detail"]["replica"] for o in outcomes) == {
        "replica-b": 2}
