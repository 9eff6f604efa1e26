"""Leader-only loops: one runner at a time, handed on when the leader's session ends."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from responder.store.leader import LeaderLoop
from tests.conftest import wait_for


async def test_one_leader_and_a_new_one_when_its_session_dies(database: str) -> None:
    """Of two loops one runs the work; when the server ends the leader's session, it stops
    at once, and afterwards again exactly one loop runs the work."""
    runs: list[str] = []
    changes: list[tuple[str, bool]] = []

    def make(name: str) -> LeaderLoop:
        async def work() -> None:
            while True:
                runs.append(name)
                await asyncio.sleep(0.05)

        return LeaderLoop(database, "reconciler", work, check_s=0.2,
                          on_change=lambda is_leader: changes.append((name, is_leader)))

    loops = {n: make(n) for n in ("a", "b")}
    tasks = [asyncio.create_task(lp.run()) for lp in loops.values()]

    def leaders() -> list[str]:
        return [n for n, lp in loops.items() if lp.is_leader]

    try:
        await wait_for(lambda: len(leaders()) == 1, what="a leader")
        await asyncio.sleep(0.6)
        [leader] = leaders()
        assert set(runs) == {leader}
        admin = await asyncpg.connect(database)
        try:
            # The leader's session is the one holding the advisory lock.
            killed = await admin.fetchval(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())")
        finally:
            await admin.close()
        assert killed
        await wait_for(lambda: (leader, False) in changes, timeout_s=3,
                       what="the old leader to stop")
        await wait_for(lambda: len(leaders()) == 1, timeout_s=5, what="a new leader")
        await asyncio.sleep(0.3)
        runs.clear()
        await asyncio.sleep(0.6)
        assert set(runs) == set(leaders())  # one runner again
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
