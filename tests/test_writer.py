"""Group commit: poisonous units fail alone, hooks run once, two writers keep one chain."""

from __future__ import annotations

import asyncio

import asyncpg

from responder.store.actionlog import ChainAppender, Entry, verify_chain
from responder.store.types import Conn
from responder.store.writer import Writer
from tests import append_lock


def appending(kind: str, hooks: list[str], fail: bool = False):  # type: ignore[no-untyped-def]
    async def unit(conn: Conn, chain: ChainAppender) -> str:
        chain.add(Entry(kind))
        chain.after_commit(lambda: hooks.append(kind))
        if fail:
            raise ValueError("poison")
        return kind

    return unit


async def test_a_poisonous_unit_fails_alone(pool: asyncpg.Pool) -> None:
    """One failing unit in a batch gets its error; its neighbours commit, hooks run once."""
    hooks: list[str] = []
    writer = Writer(pool, lambda: "0" * 64)
    results = asyncio.gather(
        writer.submit(appending("a", hooks)),
        writer.submit(appending("poison", hooks, fail=True)),
        writer.submit(appending("b", hooks)),
        return_exceptions=True,
    )
    task = asyncio.create_task(writer.run())
    done = await results
    writer.stop()
    await task
    assert done[0] == "a" and done[2] == "b"
    assert isinstance(done[1], ValueError)
    assert sorted(hooks) == ["a", "b"]
    async with pool.acquire() as conn:
        kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM action_log ORDER BY seq")]
        report = await verify_chain(conn)
    assert sorted(kinds) == ["a", "b"]
    assert report.records == 2


async def test_two_writers_share_one_chain(pool: asyncpg.Pool) -> None:
    """Writers on one database (replicas) interleave appends and the chain still verifies."""
    writers = [Writer(pool, lambda: "0" * 64) for _ in range(2)]
    tasks = [asyncio.create_task(w.run()) for w in writers]
    hooks: list[str] = []
    await asyncio.gather(*(writers[i % 2].submit(appending(f"e{i}", hooks))
                           for i in range(60)))
    for w in writers:
        w.stop()
    await asyncio.gather(*tasks)
    async with pool.acquire() as conn:
        report = await verify_chain(conn)
    assert report.records == 60
    assert len(hooks) == 60


async def test_a_writer_whose_head_moved_starts_over_and_keeps_the_chain(
        pool: asyncpg.Pool) -> None:
    """A writer begins in one round trip on the head it kept; when another writer appended
    in between, it rolls that start back, reads the real head and still appends in order."""
    first, other = Writer(pool, lambda: "0" * 64), Writer(pool, lambda: "0" * 64)
    tasks = [asyncio.create_task(w.run()) for w in (first, other)]
    hooks: list[str] = []
    for i in range(6):  # each append moves the head the other writer kept
        assert await (first, other)[i % 2].submit(appending(f"e{i}", hooks)) == f"e{i}"
    for w in (first, other):
        w.stop()
    await asyncio.gather(*tasks)
    async with pool.acquire() as conn:
        kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM action_log ORDER BY seq")]
        report = await verify_chain(conn)
    assert kinds == [f"e{i}" for i in range(6)]
    assert report.records == 6 and hooks == kinds


async def test_a_writer_never_carries_on_a_transaction_left_open(pool: asyncpg.Pool) -> None:
    """Whatever left the writer's connection inside a transaction, the next batch does not
    commit it: the writer starts on a fresh connection."""
    writer = Writer(pool, lambda: "0" * 64)
    task = asyncio.create_task(writer.run())
    hooks: list[str] = []
    await writer.submit(appending("a", hooks))
    conn = await writer._tx.connection()
    await conn.execute("BEGIN; CREATE TABLE stray_left_open (x int)")
    assert await writer.submit(appending("b", hooks)) == "b"
    writer.stop()
    await task
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass('stray_left_open')") is None
        assert (await verify_chain(conn)).records == 2


class Patient:
    """A unit that may wait for company, as a step's close does."""

    linger_s = 0.2

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def __call__(self, conn: Conn, chain: ChainAppender) -> str:
        chain.add(Entry(self.kind))
        return self.kind


class VeryPatient(Patient):
    linger_s = 600.0


async def test_a_unit_that_may_wait_shares_the_next_commit(pool: asyncpg.Pool) -> None:
    """A lingering unit is held back until other work arrives and both commit together; one
    alone still commits, and stop() does not wait out its time."""
    writer = Writer(pool, lambda: "0" * 64)
    task = asyncio.create_task(writer.run())
    patient = asyncio.create_task(writer.submit(VeryPatient("close")))
    await asyncio.sleep(0.05)
    assert not patient.done()
    assert await writer.submit(appending("record", [])) == "record"
    assert await patient == "close"
    assert writer.batches == 1
    alone = asyncio.create_task(writer.submit(Patient("alone")))
    assert await alone == "alone"
    assert writer.batches == 2
    last = asyncio.create_task(writer.submit(VeryPatient("last")))
    await asyncio.sleep(0.05)
    writer.stop()
    await asyncio.wait_for(task, 60)  # far within the linger: stop() cut it short
    assert await last == "last"
    async with pool.acquire() as conn:
        assert (await verify_chain(conn)).records == 4


async def test_the_append_lock_watch_notes_a_level_moved_outside_the_writer(
    pool: asyncpg.Pool,
) -> None:
    """The watch the state-machine tests keep on early claims' invariant (tests/append_lock.py)
    sees a level set on a bare connection, and not one set by a writer unit."""
    async with pool.acquire() as conn:
        await append_lock.watch(conn)

    async def moved(conn: Conn, chain: ChainAppender) -> None:
        await conn.execute("INSERT INTO control_levels (control, key, level, rank)"
                           " VALUES ('symbol-mode', 'BTC-USD', 'CANCEL_ONLY', 1)")
        chain.add(Entry("moved"))

    writer = Writer(pool, lambda: "0" * 64)
    task = asyncio.create_task(writer.run())
    await writer.submit(moved)
    writer.stop()
    await task
    async with pool.acquire() as conn:
        assert await append_lock.unlocked_writes(conn) == []
        await conn.execute("UPDATE control_levels SET level = 'NORMAL', rank = 0")
        assert await append_lock.unlocked_writes(conn) == [
            "UPDATE on control_levels: UPDATE control_levels SET level = 'NORMAL', rank = 0"]
