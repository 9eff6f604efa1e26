"""Two writers on one database under generated schedules: whatever order they append in,
however their heads go stale, whatever units fail and whatever a connection was left in,
every good unit is in the chain exactly once and the chain verifies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responder.store.actionlog import ChainAppender, Entry, verify_chain
from responder.store.db import create_pool, migrate
from responder.store.types import Conn
from responder.store.writer import Writer
from tests.conftest import ADMIN_DSN, dsn_for


@dataclass(frozen=True)
class Step:
    writer: int
    units: list[bool]
    """One unit per entry; True: the unit fails (poison)."""
    left_open: bool
    """Before the step (if no step is still running), leave the writer's connection
    inside a transaction of its own."""
    with_next: bool
    """Submit this step together with the next one instead of after it."""


steps = st.lists(st.builds(Step, st.integers(0, 1), st.lists(st.booleans(), min_size=1,
                                                               max_size=4),
                           st.booleans(), st.booleans()), min_size=1, max_size=8)


def unit(kind: str, poison: bool):  # type: ignore[no-untyped-def]
    async def run(conn: Conn, chain: ChainAppender) -> str:
        chain.add(Entry(kind))
        if poison:
            raise ValueError("poison")
        return kind

    return run


@pytest.fixture(scope="module")
def shared_database() -> Iterator[str]:
    name = f"responder_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield dsn_for(name)
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def play(dsn: str, schedule: list[Step]) -> tuple[list[str], list[str], int]:
    """Run the schedule; (kinds expected, kinds appended by it, records in the chain)."""
    pool = await create_pool(dsn)
    try:
        await migrate(pool)
        async with pool.acquire() as conn:
            before = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM action_log")
        writers = [Writer(pool, lambda: "0" * 64) for _ in range(2)]
        tasks = [asyncio.create_task(w.run()) for w in writers]
        expected: list[str] = []
        pending: list[asyncio.Future[list[object]]] = []
        for n, step in enumerate(schedule):
            w = writers[step.writer]
            if step.left_open and not pending:  # only while no batch is using it
                stray = await w._tx.connection()
                if not stray.is_in_transaction():  # what it did must never be committed
                    await stray.execute(f"BEGIN; CREATE TABLE stray_{uuid.uuid4().hex} ()")
            kinds = [f"s{n}u{i}" for i in range(len(step.units))]
            expected += [k for k, poison in zip(kinds, step.units, strict=True) if not poison]
            pending.append(asyncio.gather(
                *(w.submit(unit(k, poison)) for k, poison in zip(kinds, step.units,
                                                                strict=True)),
                return_exceptions=True))
            if not step.with_next:
                for results in await asyncio.gather(*pending):
                    assert all(isinstance(r, str | ValueError) for r in results), results
                pending = []
        for results in await asyncio.gather(*pending):
            assert all(isinstance(r, str | ValueError) for r in results), results
        for w in writers:
            w.stop()
        await asyncio.gather(*tasks)
        async with pool.acquire() as conn:
            appended = [r["kind"] for r in await conn.fetch(
                "SELECT kind FROM action_log WHERE seq > $1 ORDER BY seq", before)]
            records = (await verify_chain(conn)).records
            assert not await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'stray_%'")
        return expected, appended, records - before
    finally:
        await pool.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedule=steps)
def test_two_writers_keep_one_chain_whatever_the_schedule(
        shared_database: str, schedule: list[Step]) -> None:
    expected, appended, records = asyncio.run(play(shared_database, schedule))
    assert sorted(appended) == sorted(expected)  # each good unit once, no poison
    assert records == len(expected)
    if not any(s.with_next for s in schedule):  # each step waited for the one before
        numbers = [int(kind[1:].split("u")[0]) for kind in appended]
        assert numbers == sorted(numbers)
