"""Leader-only work moves the moment the leader's session ends, not at a follower's poll."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from responder.store.leader import LeaderLoop
from responder.store.locks import LEADER as LOCK_IDS
from tests.conftest import wait_for

TERMINATE_LEADER_SQL = """
SELECT pg_terminate_backend(pid) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


async def test_a_follower_leads_as_soon_as_the_leaders_session_ends(database: str) -> None:
    """With checks 60 s apart, neither a poll nor a check can explain it: when the server
    ends the leader's session, the leader stops and the follower leads, within seconds."""
    changes: list[tuple[str, bool]] = []

    def make(name: str) -> LeaderLoop:
        async def work() -> None:
            await asyncio.Event().wait()

        return LeaderLoop(database, "reconciler", work, check_s=60,
                          on_change=lambda is_leader: changes.append((name, is_leader)))

    loops = {n: make(n) for n in ("a", "b")}
    tasks = [asyncio.create_task(lp.run()) for lp in loops.values()]
    try:
        await wait_for(lambda: sum(lp.is_leader for lp in loops.values()) == 1,
                       what="a leader")
        [leader] = [n for n, lp in loops.items() if lp.is_leader]
        [follower] = set(loops) - {leader}
        await asyncio.sleep(0.3)  # the follower is waiting for the lock by now
        admin = await asyncpg.connect(database)
        try:
            assert await admin.fetch(TERMINATE_LEADER_SQL, LOCK_IDS["reconciler"])
        finally:
            await admin.close()
        await wait_for(lambda: loops[follower].is_leader, timeout_s=10,
                       what="the follower to lead")
        # The follower may start a few milliseconds before the old leader has heard.
        await wait_for(lambda: (leader, False) in changes, timeout_s=10,
                       what="the old leader to stop")
        assert [lp.is_leader for lp in loops.values()].count(True) == 1
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
