"""Step claims on the real PostgreSQL: one holder per step and per control key, takeover
only after the lease runs out, and the lease timed by the database clock."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from responder.store.claims import (
    Claim,
    KeyBusy,
    claim_step,
    hold_key,
    let_go,
    renew_claim,
)
from responder.store.locks import KEY_NS as KEY_LOCK_NS
from responder.store.steps import pending_steps


async def new_step(pool: asyncpg.Pool, key: str, level: str = "CANCEL_ONLY",
                   incident_id: int | None = None) -> int:
    async with pool.acquire() as conn:
        if incident_id is None:
            incident_id = await conn.fetchval(
                "INSERT INTO incidents (rule_id, scope, severity, status, rules_hash)"
                " VALUES ('r', $1, 'sev1', 'open', 'h') RETURNING id", uuid.uuid4().hex)
        step_id: int = await conn.fetchval(
            "INSERT INTO steps (incident_id, kind, position, control, key, level, rank,"
            " idempotency_key) VALUES ($1, 'step', 0, 'symbol_mode', $2, $3, 1, $4)"
            " RETURNING id", incident_id, key, level, f"k-{uuid.uuid4()}")
        return step_id


async def claim(pool: asyncpg.Pool, step_id: int, replica: str,
                lease_s: float = 30.0) -> Claim | str:
    async with pool.acquire() as conn:
        return await claim_step(conn, step_id, replica, lease_s)


async def expire(pool: asyncpg.Pool, step_id: int) -> None:
    async with pool.acquire() as conn:
        await conn.execute("UPDATE steps SET lease_until = now() - interval '1 second'"
                           " WHERE id = $1", step_id)


async def test_one_of_two_concurrent_claims_wins(pool: asyncpg.Pool) -> None:
    """Two replicas claiming one step at the same moment: exactly one gets it, every time."""
    for _ in range(20):
        step = await new_step(pool, uuid.uuid4().hex)
        results = await asyncio.gather(claim(pool, step, "a"), claim(pool, step, "b"))
        assert sorted(isinstance(r, Claim) for r in results) == [False, True]
        # The loser either saw the winner's lease or met its key lock mid-statement.
        assert {"busy", "locked"} & set(results)


async def test_steps_on_one_key_are_claimed_by_one_replica_at_a_time(
        pool: asyncpg.Pool) -> None:
    """Claims of two different steps on one control key race: only one replica wins."""
    for _ in range(20):
        key = uuid.uuid4().hex
        x, y = await new_step(pool, key), await new_step(pool, key, "HARD_HALT")
        results = await asyncio.gather(claim(pool, x, "a"), claim(pool, y, "b"))
        assert sorted(isinstance(r, Claim) for r in results) == [False, True]


async def test_takeover_only_after_the_lease_runs_out(pool: asyncpg.Pool) -> None:
    """A live lease refuses others; once run out, the next claim names who held it."""
    step = await new_step(pool, "BTC-USD")
    first = await claim(pool, step, "a")
    assert isinstance(first, Claim) and not first.is_takeover
    assert await claim(pool, step, "b") == "busy"
    again = await claim(pool, step, "a")  # our own claim, after a store error say
    assert isinstance(again, Claim) and not again.is_takeover
    await expire(pool, step)
    async with pool.acquire() as conn:
        assert not await renew_claim(conn, step, "b", 30)
    taken = await claim(pool, step, "b")
    assert isinstance(taken, Claim) and taken.previous == "a" and taken.claims == 3
    async with pool.acquire() as conn:
        assert not await renew_claim(conn, step, "a", 30)  # a lost it
        assert await renew_claim(conn, step, "b", 30)
        await conn.execute("UPDATE steps SET status = 'done' WHERE id = $1", step)
    assert await claim(pool, step, "c") == "closed"


async def test_lease_is_timed_by_the_database_clock(pool: asyncpg.Pool) -> None:
    """lease_until is now() on the server plus the lease, whatever the replica's clock says."""
    step = await new_step(pool, "ETH-USD")
    await claim(pool, step, "a", lease_s=42)
    async with pool.acquire() as conn:
        left = await conn.fetchval("SELECT extract(epoch FROM lease_until - now())"
                                   " FROM steps WHERE id = $1", step)
    assert 40 < float(left) <= 42


async def test_sweep_leaves_incidents_another_replica_works_on(pool: asyncpg.Pool) -> None:
    """While b holds the first step of an incident, a does not see its later steps; after
    b lets go, a sees them all, in order."""
    first = await new_step(pool, "SOL-USD")
    async with pool.acquire() as conn:
        incident = await conn.fetchval("SELECT incident_id FROM steps WHERE id = $1", first)
    second = await new_step(pool, "SOL-USD", "HARD_HALT", incident_id=incident)
    assert isinstance(await claim(pool, first, "b"), Claim)
    async with pool.acquire() as conn:
        assert [s.id for s in await pending_steps(conn, "a")] == []
        assert [s.id for s in await pending_steps(conn, "b")] == [first, second]
        assert await let_go(conn, "b") == 1
        assert [s.id for s in await pending_steps(conn, "a")] == [first, second]
    taken = await claim(pool, first, "a")
    assert isinstance(taken, Claim) and taken.previous == "b"


async def test_a_lease_that_ran_out_is_not_renewed(pool: asyncpg.Pool) -> None:
    """Once a lease has run out others may act on the key (a person holding it, say), so
    its holder cannot quietly extend it: its outcome is left to the next claim."""
    step = await new_step(pool, "SOL-USD")
    assert isinstance(await claim(pool, step, "a"), Claim)
    await expire(pool, step)
    async with hold_key(pool, "symbol_mode", "SOL-USD", wait_s=0):  # nobody holds a live claim
        async with pool.acquire() as conn:
            assert not await renew_claim(conn, step, "a", 30)
        assert await claim(pool, step, "a") == "locked"  # the person holds the key
    again = await claim(pool, step, "a")
    assert isinstance(again, Claim)


async def test_hold_key_waits_for_a_live_claim_then_gives_up(pool: asyncpg.Pool) -> None:
    step = await new_step(pool, "ADA-USD")
    assert isinstance(await claim(pool, step, "a"), Claim)
    with pytest.raises(KeyBusy, match="automation"):
        async with hold_key(pool, "symbol_mode", "ADA-USD", wait_s=0.3):
            pass
    async with pool.acquire() as conn:
        await conn.execute("UPDATE steps SET status = 'done' WHERE id = $1", step)
    async with hold_key(pool, "symbol_mode", "ADA-USD", wait_s=0.3):
        # a second person is refused while the first holds it
        with pytest.raises(KeyBusy, match="person"):
            async with hold_key(pool, "symbol_mode", "ADA-USD", wait_s=0.2):
                pass


async def test_a_claim_gives_way_to_a_step_claimed_while_it_waited(pool: asyncpg.Pool) -> None:
    """Replica a's writer closes step r on a key, takes the key's lock and records step p
    claimed for itself, as RECORD_SQL does. Meanwhile replica b claims step s on the same
    key: its statement waits on r's row lock, then misses p (inserted after it began). b
    must give its claim back rather than hold a second live lease on the key."""
    key = f"K-{uuid.uuid4().hex[:8]}"
    r = await new_step(pool, key)
    s = await new_step(pool, key, "HARD_HALT")
    conn = await pool.acquire()
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("UPDATE steps SET status = 'done' WHERE id = $1", r)
        assert await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, hashtext($2))",
                                   KEY_LOCK_NS, f"symbol_mode/{key}")
        incident = await conn.fetchval(
            "INSERT INTO incidents (rule_id, scope, severity, status, rules_hash)"
            " VALUES ('r', $1, 'sev1', 'open', 'h') RETURNING id", uuid.uuid4().hex)
        p = await conn.fetchval(
            "INSERT INTO steps (incident_id, kind, position, control, key, level, rank,"
            " idempotency_key, claimed_by, lease_until, claims) VALUES ($1, 'step', 0,"
            " 'symbol_mode', $2, 'CANCEL_ONLY', 1, $3, 'a', now() + interval '30 s', 1)"
            " RETURNING id", incident, key, f"k-{uuid.uuid4()}")
        b = asyncio.create_task(claim(pool, s, "b"))
        await asyncio.sleep(0.3)
        assert not b.done()  # waiting on r's row lock
        await tx.commit()
    finally:
        await pool.release(conn)
    assert await b == "busy"
    async with pool.acquire() as c:
        live = await c.fetch("SELECT id, claimed_by FROM steps WHERE key = $1"
                             " AND status = 'pending' AND lease_until >= now()", key)
    assert [(x["id"], x["claimed_by"]) for x in live] == [(p, "a")]
