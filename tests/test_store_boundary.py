"""The store's edge: its functions raise our errors, never the driver's, and every lock on
a control key (a person's hold, a claim's check, a batch's early claim) is the same lock."""

from __future__ import annotations

import pytest

from responder.errors import StoreError, StoreUnavailable
from responder.store import health, intake_sql, locks, outbox, sessions
from responder.store.db import acquire, create_pool
from responder.store.types import Pool


async def test_a_closed_pool_is_an_unavailable_store(database: str) -> None:
    p = await create_pool(database)
    await p.close()
    with pytest.raises(StoreUnavailable):
        await outbox.claim_due(p, 10, 30.0)
    with pytest.raises(StoreUnavailable):
        await health.contained(p, 1.0)


async def test_a_statement_the_server_refuses_is_a_store_error(database: str) -> None:
    p = await create_pool(database)  # not migrated: the table is missing
    try:
        async with acquire(p) as conn:
            with pytest.raises(StoreError) as raised:
                await sessions.is_revoked(conn, "sid")
        assert not isinstance(raised.value, StoreUnavailable)
    finally:
        await p.close()


async def test_one_lock_per_key_whoever_takes_it(pool: Pool) -> None:
    """A person's hold (session level) is the lock a batch's early claim tries, and the one
    a claim's check asks about, under the same name."""
    early = (f"SELECT {intake_sql.TRY_KEY}"  # noqa: S608 - constants only
             " FROM (VALUES ('symbol_mode', 'BTC/USD'), ('symbol_mode', 'ETH/USD'))"
             " AS g(control, key)")
    async with pool.acquire() as person, pool.acquire() as batch:
        assert await locks.hold_key(person, "symbol_mode", "BTC/USD")
        try:
            async with batch.transaction():
                assert [r[0] for r in await batch.fetch(early)] == [False, True]
                free = await batch.fetchval(
                    f"SELECT {locks.KEY_FREE_IN_XACT_SQL}"  # noqa: S608 - constants only
                    " FROM (VALUES ('symbol_mode', 'BTC/USD')) AS k(control, key)")
                assert free is False
        finally:
            await locks.free_key(person, "symbol_mode", "BTC/USD")
        async with batch.transaction():
            assert [r[0] for r in await batch.fetch(early)] == [True, True]


async def test_a_replica_name_is_held_once(pool: Pool) -> None:
    async with pool.acquire() as first, pool.acquire() as second:
        assert await locks.try_replica_name(first, "replica-a")
        assert not await locks.try_replica_name(second, "replica-a")
        await locks.free_replica_name(first, "replica-a")
        assert await locks.try_replica_name(second, "replica-a")
        await locks.free_replica_name(second, "replica-a")
