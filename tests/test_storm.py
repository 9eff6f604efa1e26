"""The blast-radius guard counts what every replica contained, not only this one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import aiohttp
import asyncpg

from responder.engine.storm import StormGuard
from responder.rules.table import Rule
from tests.conftest import DaemonFactory, Exchange, idle, log_kinds, post_alerts, wait_for
from tests.test_engine import alert, payload


def _rule(storm_max: int | None) -> Rule:
    """Only what the guard reads of a rule."""
    return cast(Rule, SimpleNamespace(id="r", storm_max=storm_max))


def test_the_store_count_adds_to_what_this_replica_admitted_since() -> None:
    guard = StormGuard(window_s=60, global_max=10)
    rule = _rule(5)
    assert guard.admit(rule, "a", now=1.0) is None
    guard.absorb({"r": 3}, now=2.0)  # our one and two from another replica
    assert guard.admit(rule, "b", now=3.0) is None  # 3 + 1 since
    assert guard.admit(rule, "c", now=4.0) is None  # 3 + 2 since
    refused = guard.admit(rule, "d", now=5.0)
    assert refused is not None and "already contained 5" in refused
    assert guard.admit(rule, "b", now=5.0) is None  # a repeat is not a new containment
    guard.absorb({"r": 9, "other": 1}, now=6.0)
    refused = guard.admit(_rule(None), "e", now=7.0)
    assert refused is not None and "10 containments" in refused


async def test_another_replicas_containments_count(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """18 symbols contained by another replica a moment ago: this replica halts 2 more
    (limit 20) and then takes the rule's storm step instead."""
    daemon = await make_daemon()
    conn = await asyncpg.connect(database)
    try:
        for i in range(18):
            incident = await conn.fetchval(
                "INSERT INTO incidents (rule_id, scope, severity, status, rules_hash)"
                " VALUES ('split-brain', $1, 'sev1', 'open', 'x') RETURNING id",
                f"symbol=P{i}-USD")
            await conn.execute(
                "INSERT INTO steps (incident_id, kind, position, control, key, level, rank,"
                " idempotency_key, status) VALUES ($1, 'step', 0, 'symbol-mode', $2,"
                " 'HARD_HALT', 3, $3, 'done')", incident, f"P{i}-USD", f"peer-{i}")
    finally:
        await conn.close()
    assert daemon.state is not None and daemon.state.modes.guard is not None
    guard = daemon.state.modes.guard
    await wait_for(lambda: guard._shared_all >= 18, what="the guard reading the store")
    status, _ = await post_alerts(http, daemon, payload(
        *[alert("SplitBrainSuspected", f"S{i}-USD") for i in range(5)]))
    assert status == 200
    await idle(daemon)
    symbol_calls = [c for c in exchange.state.calls if c.path.startswith("/admin/symbols/")]
    assert len(symbol_calls) == 2
    assert exchange.state.global_mode == "HARD_HALT"
    assert (await log_kinds(database)).count("storm_guard_tripped") == 3


def test_a_scope_admitted_long_ago_is_counted_again() -> None:
    """A repeat is a repeat only within the window; a day later it is a new containment."""
    guard = StormGuard(window_s=60, global_max=3)
    rule = _rule(None)
    for scope in ("s1", "s2", "s3"):
        assert guard.admit(rule, scope, now=0.0) is None
    assert guard.admit(rule, "s1", now=30.0) is None  # within the window: a repeat
    guard.absorb({"r": 50}, now=86_400.0)
    refused = guard.admit(rule, "s1", now=86_401.0)
    assert refused is not None and "50 containments" in refused
