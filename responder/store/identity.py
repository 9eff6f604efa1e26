"""Who this replica is in step claims, and ending the claims of the process it replaced.

A step claimed by a replica that died is left until its lease runs out, because a replica
that merely lost the store may still be calling. A process that restarts from the same data
directory need not wait that long for its predecessor's claims: each process holds its own
name with a PostgreSQL session advisory lock, which the server frees when that process's
connection closes (a crash included), and the data directory remembers the last name used
from it. At start, if that name's lock is free, the old process is gone and its leases are
ended, so the sweep takes its steps over at once (recorded as takeovers).

The same lock tells other replicas this one is gone (store/liveness.py), so this replica
holds it as the condition for calling: the moment its session ends (``holds`` turns false,
``on_lost`` runs) it cancels its steps in flight and starts no call until it holds the name
again, which it tries at once and then every ``check_s``.

A name is never shared by two live processes: RESPONDER_REPLICA_ID if set and free, else
one of this process's own. A configured name still held (another live process, or one the
server has not yet seen die) gives way to a derived name, so the replica starts either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

import asyncpg
import structlog

from responder.store import locks
from responder.store.claims import let_go
from responder.store.db import UNAVAILABLE
from responder.store.types import Conn

log = structlog.get_logger("responder.identity")

FILE_NAME = "replica-id"


def process_name(base: str | None = None) -> str:
    """A name unique to this process: hostname (or ``base``), pid and a random part."""
    return f"{base or socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"[-128:]


class Identity:
    """Holds this replica's name for as long as the process runs (see module doc)."""

    def __init__(self, dsn: str, data_dir: Path, *, check_s: float) -> None:
        self._dsn = dsn
        self._file = data_dir / FILE_NAME
        self._check_s = check_s
        self._conn: asyncpg.Connection | None = None
        self._holds = False
        self._lost = asyncio.Event()
        self.on_lost: Callable[[], None] | None = None
        self.name = ""

    @property
    def holds(self) -> bool:
        """True while the session holding our name is up: only then may a call start."""
        return self._holds and self._conn is not None and not self._conn.is_closed()

    async def take(self, configured: str | None) -> str:
        """Hold a name for this process and end the leases of the one it replaced."""
        self._conn = await self._connect()
        name = configured or process_name()
        if not await locks.try_replica_name(self._conn, name):
            held, name = name, process_name(configured)
            log.warning("replica name held by another session (a live process, or one the"
                        " server has not yet seen end); using a name of this process's own",
                        wanted=held, name=name)
            await locks.try_replica_name(self._conn, name)
        self.name = name
        self._held_on(self._conn)
        previous = self._remember(name)
        if previous is not None and previous != name:
            await self._end_leases_of(previous)
        return name

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self._dsn, timeout=self._check_s * 2, server_settings={
            "application_name": "responder-identity"})

    def _held_on(self, conn: asyncpg.Connection) -> None:
        self._holds = True
        conn.add_termination_listener(self._ended)

    def _ended(self, conn: Conn) -> None:
        """The name's session ended (the server closed it, or a failed check dropped it)."""
        if conn is not self._conn or not self._holds:
            return  # a session given up on purpose, or one that no longer held the name
        self._holds = False
        self._lost.set()
        log.error("replica name session ended: steps in flight are cancelled and no call"
                  " starts until the name is held again", name=self.name)
        if self.on_lost is not None:
            self.on_lost()

    def _remember(self, name: str) -> str | None:
        """Write our name to the data directory; return the one it held before."""
        previous = None
        try:
            previous = self._file.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("replica name file unreadable", path=str(self._file), error=str(e))
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._file.with_suffix(".tmp")
            tmp.write_text(name + "\n", encoding="utf-8")
            tmp.replace(self._file)
        except OSError as e:
            log.warning("replica name not saved; the next start waits out this process's"
                        " leases", path=str(self._file), error=str(e))
        return previous

    async def _end_leases_of(self, previous: str) -> None:
        assert self._conn is not None
        if not await locks.try_replica_name(self._conn, previous):
            log.info("the previous process of this data directory still holds its name;"
                     " its steps resume when their leases run out", previous=previous)
            return
        await locks.free_replica_name(self._conn, previous)
        if ended := await let_go(self._conn, previous):
            log.warning("the previous process of this data directory is gone: its step"
                        " leases are ended, to be taken over now", previous=previous,
                        steps=ended)

    async def keep(self) -> None:
        """Check the holding session; if it ends, hold the name again on a new one."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self._check_s)
            try:
                if self.holds:
                    assert self._conn is not None
                    await self._conn.fetchval("SELECT 1", timeout=self._check_s)
                    continue
                await self._hold_again()
            except (*UNAVAILABLE, asyncpg.PostgresError) as e:
                log.warning("replica name session lost; holding the name again", error=str(e))
                if self._conn is not None:
                    self._ended(self._conn)
                await self.release()

    async def _hold_again(self) -> None:
        self._lost.clear()
        if self._conn is None or self._conn.is_closed():
            await self.release()
            self._conn = await self._connect()
        if await locks.try_replica_name(self._conn, self.name, timeout_s=self._check_s):
            self._held_on(self._conn)
            log.info("replica name held again", name=self.name)
        else:
            log.error("replica name held by another session; a replica starting from"
                      " this data directory meanwhile may end this one's leases",
                      name=self.name)

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
