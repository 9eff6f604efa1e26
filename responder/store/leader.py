"""Leader-only loops: work that must run on one replica at a time.

The leader holds a PostgreSQL session advisory lock on a connection of its own. The
server releases the lock when that session ends, so a replica that dies (even by SIGKILL)
hands leadership on as soon as its connection closes. Followers wait on the lock in the
server (``pg_advisory_lock``, bounded by ``lock_timeout`` so a dead follower session is
noticed), so one of them leads the moment the leader's session ends, not at its next
poll. The leader stops the work the moment its session ends (a termination listener) or a
check on it fails, because it can no longer be sure it holds the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import structlog

from responder.store import locks
from responder.store.db import UNAVAILABLE
from responder.store.types import Conn

log = structlog.get_logger("responder.leader")


Work = Callable[[], Coroutine[Any, Any, None]]


class LeaderLoop:
    """Runs ``work`` only while this replica holds the role's lock."""

    def __init__(self, dsn: str, role: str, work: Work, *, check_s: float,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self._dsn = dsn
        self._role = role
        self._lock_id = locks.LEADER[role]
        self._work = work
        self._check_s = check_s
        self._wait_s = max(check_s * 5, 1.0)
        self._on_change = on_change
        self.is_leader = False

    async def run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, timeout=self._check_s * 2,
                    server_settings={"application_name": f"responder-leader-{self._role}"})
                # One session for as long as it works: followers wait for the lock on it.
                await conn.execute(f"SET lock_timeout = {int(self._wait_s * 1000)}")
                while True:
                    if await self._wait_for_lock(conn):
                        await self._lead(conn)
                        await asyncio.sleep(self._check_s)
            except (*UNAVAILABLE, asyncpg.PostgresError) as e:
                log.warning("leader lock: store unavailable", role=self._role, error=str(e))
            finally:
                self._set(False)
                if conn is not None:
                    # Ending the session releases the lock if we held it. Terminate rather
                    # than close: a check may still be in flight when we are cancelled.
                    conn.terminate()
            await asyncio.sleep(self._check_s)

    async def _wait_for_lock(self, conn: asyncpg.Connection) -> bool:
        """Wait up to ``lock_timeout`` in the server for the lock; False if it stayed held."""
        try:
            await conn.execute(locks.WAIT_LEADER_SQL.format(lock_id=self._lock_id),
                               timeout=self._wait_s + self._check_s)
        except asyncpg.LockNotAvailableError:
            return False
        return True

    async def _lead(self, conn: asyncpg.Connection) -> None:
        """Run the work until it ends or the lock's session ends or stops answering."""
        self._set(True)
        log.info("leading", role=self._role)
        task = asyncio.create_task(self._work(), name=f"leader-{self._role}")

        def ended(_: Conn) -> None:
            log.warning("leader lock session ended: stopping", role=self._role)
            task.cancel()

        conn.add_termination_listener(ended)
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self._check_s)
                if not task.done():
                    await conn.fetchval("SELECT 1", timeout=self._check_s)
            if not task.cancelled() and (error := task.exception()) is not None:
                log.error("leader work crashed; giving up the lock and trying again",
                          role=self._role, error=repr(error))
            await conn.execute(locks.FREE_LEADER_SQL, self._lock_id)
            self._set(False)
        except (*UNAVAILABLE, asyncpg.PostgresError):
            log.warning("leader lock session failed: stopping", role=self._role)
            raise
        finally:
            conn.remove_termination_listener(ended)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _set(self, is_leader: bool) -> None:
        if is_leader != self.is_leader:
            self.is_leader = is_leader
            if self._on_change is not None:
                self._on_change(is_leader)
