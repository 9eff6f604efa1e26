"""After a takeover, an incident's steps still run in the order the rule lists them.

Step ids are not position order (a batch inserts an incident's steps sorted by control
name), so a sweep that ordered by id applied the rule's second step before its first.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from examples.exchange import Faults
from tests.conftest import Exchange, Proc, fixture_bytes, wait_for
from tests.test_process import kill, post
from tests.test_replicas import no_pending, rows, start_pair


async def test_a_survivor_runs_the_killed_replicas_steps_by_position(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """SIGKILL mid-call of step 0: the survivor takes the incident over and applies step 0
    (withdrawals) before step 1 (the symbol), whatever their ids."""
    exchange.state.faults = Faults(delay_s=1.5)
    pair = await start_pair(tmp_path, procs, database, rules_dir)
    victim = pair["replica-a"]
    assert await post(http, victim.port, fixture_bytes("firing-single.json")) == 200
    await wait_for(lambda: exchange.state.total_inflight > 0, what="a call in flight")
    [claimed] = await rows(database, "SELECT control, position FROM steps"
                                     " WHERE claimed_by = 'replica-a' AND status = 'pending'")
    assert (claimed["control"], claimed["position"]) == ("withdrawals", 0)
    await kill(victim)
    await wait_for(lambda: no_pending(database), timeout_s=30, what="every step closed")

    outcomes = await rows(database, "SELECT body FROM action_log WHERE kind = 'outcome'"
                                    " ORDER BY seq")
    order = [json.loads(r["body"])["control"] for r in outcomes]
    assert order == ["withdrawals", "symbol-mode"], order
    positions = await rows(database, "SELECT id, position FROM steps ORDER BY id")
    # The case that failed: ids not in position order.
    assert [p["position"] for p in positions] != sorted(p["position"] for p in positions)
