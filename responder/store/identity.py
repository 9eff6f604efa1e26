"""Who this replica is in step claims, kept across restarts, held by one process at a time.

A step claimed by a replica that then died is left until its lease runs out, because a
replica that merely lost the store may still be calling. A restart that comes back under
the same name can take its own claims at once instead: it knows the old process is gone,
because the name is held by a PostgreSQL session advisory lock for the life of a process,
and the server frees it the moment that process's connection closes (a crash included).

The name comes from RESPONDER_REPLICA_ID, else from a file in the data directory, made
once. A configured name another live process holds stops the start; a name from the file
that is held (two processes sharing a data directory) gives way to one of this process's
own, which resumes nothing early.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from pathlib import Path

import asyncpg
import structlog

from responder.errors import ConfigError
from responder.store.db import UNAVAILABLE

log = structlog.get_logger("responder.identity")

LOCK_NS = 0x72657069  # "repi": advisory lock namespace for replica names
TRY_SQL = "SELECT pg_try_advisory_lock($1, hashtext($2))"
FILE_NAME = "replica-id"


def process_name() -> str:
    """hostname-pid-random: unique to this process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def saved_name(data_dir: Path) -> str | None:
    """The name kept in the data directory, made on first use; None if it cannot be."""
    path = data_dir / FILE_NAME
    try:
        name = path.read_text(encoding="utf-8").strip()
        if name:
            return name
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("replica name file unreadable; using a name of this process's own",
                    path=str(path), error=str(e))
        return None
    name = f"{socket.gethostname()}-{secrets.token_hex(4)}"[:128]
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(name + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        log.warning("replica name not saved; a restart will not resume its claims early",
                    path=str(path), error=str(e))
    return name


class Identity:
    """Holds this replica's name for as long as the process runs (see module doc)."""

    def __init__(self, dsn: str, *, check_s: float) -> None:
        self._dsn = dsn
        self._check_s = check_s
        self._conn: asyncpg.Connection | None = None
        self.name = ""

    async def take(self, configured: str | None, data_dir: Path) -> str:
        """Hold the configured or saved name; ConfigError if a configured one is in use."""
        wanted = configured or saved_name(data_dir)
        if wanted is not None and await self._hold(wanted):
            self.name = wanted
            return wanted
        if configured is not None:
            raise ConfigError(f"RESPONDER_REPLICA_ID: {configured!r} is held by another live"
                              " process on this database; give each replica its own")
        fallback = process_name()
        if wanted is not None:
            log.warning("replica name in use by another process (a shared data directory?);"
                        " using one of this process's own", wanted=wanted, name=fallback)
        if not await self._hold(fallback):
            raise ConfigError(f"replica name {fallback!r} is held by another process")
        self.name = fallback
        return fallback

    async def _hold(self, name: str) -> bool:
        await self.release()
        conn = await asyncpg.connect(self._dsn, timeout=self._check_s * 2, server_settings={
            "application_name": "responder-identity"})
        if await conn.fetchval(TRY_SQL, LOCK_NS, name):
            self._conn = conn
            return True
        await conn.close()
        return False

    async def keep(self) -> None:
        """Check the holding session; if it ends, take the name again on a new one. If
        another process took it meanwhile, raise: two live processes must not share it."""
        while True:
            await asyncio.sleep(self._check_s)
            try:
                if self._conn is not None and not self._conn.is_closed():
                    await self._conn.fetchval("SELECT 1", timeout=self._check_s)
                    continue
            except (*UNAVAILABLE, asyncpg.PostgresError) as e:
                log.warning("replica name session lost; taking the name again", error=str(e))
            try:
                if not await self._hold(self.name):
                    raise ConfigError(f"replica name {self.name!r} was taken by another"
                                      " process while the store was unreachable")
                log.info("replica name held again", name=self.name)
            except (*UNAVAILABLE, asyncpg.PostgresError) as e:
                log.warning("replica name not held: store unavailable", error=str(e))

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
