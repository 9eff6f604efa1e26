"""A watch, for tests, on what an early claim relies on: every transaction that adds a step
or moves a held level holds the action log's append lock.

An early claim's key lock is taken inside the plan statement, after its snapshot
(store/intake_sql.py). Nothing can commit a step or a level change on that key in between
only because every such transaction also appends to the action log, and so waits for the
append lock the recording transaction already holds. Triggers note any such write made
without the lock; a test asserts that none was.
"""

from __future__ import annotations

from responder.daemon import Daemon
from responder.store.types import Conn

APPEND_LOCK = 8243121617845092355
"""The key of pg_advisory_xact_lock in action_log_append_head() (migration 020)."""
assert (APPEND_LOCK >> 32, APPEND_LOCK & 0xFFFFFFFF) == (1919251312, 3)  # as WATCH_SQL has them

WATCH_SQL = """
CREATE TABLE IF NOT EXISTS test_unlocked_writes (
    tbl text NOT NULL, op text NOT NULL, query text, at timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION test_note_unlocked_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A bigint advisory key shows in pg_locks as its high and low halves.
    IF NOT EXISTS (SELECT 1 FROM pg_locks
                   WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                     AND objsubid = 1 AND classid::bigint = 1919251312
                     AND objid::bigint = 3) THEN
        INSERT INTO test_unlocked_writes (tbl, op, query)
        VALUES (TG_TABLE_NAME, TG_OP, current_query());
    END IF;
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS test_steps_added ON steps;
CREATE TRIGGER test_steps_added AFTER INSERT ON steps
    FOR EACH ROW EXECUTE FUNCTION test_note_unlocked_write();
DROP TRIGGER IF EXISTS test_levels_moved ON control_levels;
CREATE TRIGGER test_levels_moved AFTER INSERT OR UPDATE OF level, rank ON control_levels
    FOR EACH ROW EXECUTE FUNCTION test_note_unlocked_write();
"""


async def watch(conn: Conn) -> None:
    """Start noting unlocked step inserts and level changes in this (migrated) database."""
    await conn.execute(WATCH_SQL)


async def unlocked_writes(conn: Conn) -> list[str]:
    """What was written without the append lock: table, operation and statement."""
    rows = await conn.fetch("SELECT tbl, op, query FROM test_unlocked_writes ORDER BY at")
    return [f"{r['op']} on {r['tbl']}: {r['query']}" for r in rows]


async def watch_daemon(daemon: Daemon) -> None:
    """watch() on a running daemon's database."""
    assert daemon.state is not None
    async with daemon.state.pool.acquire() as conn:
        await watch(conn)


async def unlocked_in(daemon: Daemon) -> list[str]:
    """unlocked_writes() of a running daemon's database."""
    assert daemon.state is not None
    async with daemon.state.pool.acquire() as conn:
        return await unlocked_writes(conn)
