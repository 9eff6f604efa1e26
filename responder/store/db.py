"""Connection pool, error mapping and versioned SQL migrations."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib import resources

import asyncpg

from responder.errors import StoreError, StoreUnavailable
from responder.store import locks
from responder.store.types import Conn, Pool

UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
)


@contextlib.asynccontextmanager
async def store_errors() -> AsyncIterator[None]:
    """Translate driver and socket errors into the store's error tree."""
    try:
        yield
    except UNAVAILABLE as e:
        raise StoreUnavailable(f"store unavailable: {type(e).__name__}: {e}") from e
    except asyncpg.PostgresError as e:
        raise StoreError(f"store error: {type(e).__name__}: {e}") from e


@contextlib.asynccontextmanager
async def acquire(pool: Pool, timeout_s: float | None = None) -> AsyncIterator[Conn]:
    """A connection from the pool, with failing to get one (or to use it) in our errors."""
    async with store_errors(), pool.acquire(timeout=timeout_s) as conn:
        yield conn


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip the RESET ALL round trip on release: responder keeps no session state.

    asyncpg still rolls back a transaction left open before calling this.
    """


async def create_pool(dsn: str, *, max_size: int = 10) -> Pool:
    async with store_errors():
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, timeout=10,
                                         command_timeout=30, reset=_keep_session)
    assert pool is not None
    return pool


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("responder.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(pool: Pool) -> list[int]:
    """Apply the migrations this database has not seen, each in its own transaction."""
    applied: list[int] = []
    async with store_errors(), pool.acquire() as conn, conn.transaction():
        await locks.migration(conn)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in _migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
    return applied


async def ping(pool: Pool, timeout_s: float = 2.0) -> bool:
    try:
        async with pool.acquire(timeout=timeout_s) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout_s)
    except (*UNAVAILABLE, asyncpg.PostgresError):
        return False
    return True
