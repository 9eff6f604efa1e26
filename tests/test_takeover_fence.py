"""The store side of a takeover on the real PostgreSQL: a replica is handed over only once
its name session has ended, and its late outcome is refused after another replica's claim
took its step (docs/takeover.md)."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg

from responder.store.claims import Claim, claim_step
from responder.store.liveness import hand_over, owners_without_name
from responder.store.locks import try_replica_name
from responder.store.steps import CloseStep, StepRow
from responder.store.writer import Writer


async def new_step(pool: asyncpg.Pool, symbol: str = "BTC-USD") -> StepRow:
    key = f"k-{uuid.uuid4()}"
    async with pool.acquire() as conn:
        incident_id = await conn.fetchval(
            "INSERT INTO incidents (rule_id, scope, severity, status, rules_hash)"
            " VALUES ('r', $1, 'sev1', 'open', 'h') RETURNING id", uuid.uuid4().hex)
        step_id = await conn.fetchval(
            "INSERT INTO steps (incident_id, kind, position, control, key, level, rank,"
            " idempotency_key) VALUES ($1, 'step', 0, 'symbol_mode', $3,"
            " 'CANCEL_ONLY', 1, $2) RETURNING id", incident_id, key, symbol)
    return StepRow(step_id, incident_id, "r", "step", "symbol_mode", symbol, "CANCEL_ONLY",
                   1, None, None, None, key)


async def claim(pool: asyncpg.Pool, step: StepRow, replica: str) -> Claim | str:
    async with pool.acquire() as conn:
        return await claim_step(conn, step.id, replica, 600)


async def close(pool: asyncpg.Pool, step: StepRow, replica: str) -> bool:
    writer = Writer(pool, lambda: "0" * 64)
    task = asyncio.create_task(writer.run())
    try:
        return await writer.submit(CloseStep(step, "applied", {}, True, replica))
    finally:
        writer.stop()
        await task


async def name_session(database: str, name: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(database)
    assert await try_replica_name(conn, name)
    return conn


async def test_a_late_outcome_from_the_replica_taken_over_is_refused(
    pool: asyncpg.Pool,
) -> None:
    """Once b's claim took the step from a (handed over), a's outcome is not written; b's
    is, once, naming b."""
    step = await new_step(pool)
    assert isinstance(await claim(pool, step, "a"), Claim)
    async with pool.acquire() as conn:
        assert await hand_over(conn, "a") == 1  # a holds no name here: it is gone
    taken = await claim(pool, step, "b")
    assert isinstance(taken, Claim) and taken.previous == "a"
    assert not await close(pool, step, "a")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM steps WHERE id = $1", step.id) \
            == "pending"
        assert await conn.fetchval("SELECT count(*) FROM action_log") == 0
    assert await close(pool, step, "b")
    async with pool.acquire() as conn:
        bodies = await conn.fetch("SELECT body FROM action_log WHERE kind = 'outcome'")
    assert [json.loads(b["body"])["detail"]["replica"] for b in bodies] == ["b"]


async def test_only_replicas_whose_name_session_ended_are_handed_over(
    pool: asyncpg.Pool, database: str,
) -> None:
    """A live name keeps its leases; when its session ends its leases are ended at once,
    and a replica holding the name meanwhile (another survivor) blocks the hand-over."""
    a_step, b_step = await new_step(pool, "BTC-USD"), await new_step(pool, "ETH-USD")
    a_name = await name_session(database, "a")
    b_name = await name_session(database, "b")
    try:
        assert isinstance(await claim(pool, a_step, "a"), Claim)
        assert isinstance(await claim(pool, b_step, "b"), Claim)
        async with pool.acquire() as conn:
            assert await owners_without_name(conn, "c") == []
            assert await hand_over(conn, "a") is None
            a_name.terminate()  # a's process died: the server ends its session
            await asyncio.sleep(0.2)
            assert await owners_without_name(conn, "c") == ["a"]
            survivor = await name_session(database, "a")  # another survivor got there first
            assert await hand_over(conn, "a") is None
            await survivor.close()
            assert await hand_over(conn, "a") == 1
            assert await owners_without_name(conn, "c") == []
            live = await conn.fetch("SELECT id FROM steps WHERE lease_until > now()")
        assert [r["id"] for r in live] == [b_step.id]
    finally:
        await b_name.close()
