"""Every PostgreSQL advisory lock responder takes, and the id each one locks.

The numbers are shared by every replica (and every version of responder running against one
database), so they never change. Locks in a namespace take two int4 keys: the namespace and
``hashtext`` of a name; the others take one bigint.

    MIGRATION     one replica migrates at a time (transaction level)
    LEADER[role]  the leader of a role (session level, on the leader's own connection)
    KEY_NS        one lock per (control, key): a person's change holds it while it calls the
                  target; claims and early claims try it and leave a held key alone
    REPLICA_NS    one lock per replica name, held by the process using that name
    evidence      one lock per incident while a bundle version is sealed (transaction level)
"""

from __future__ import annotations

from responder.store.types import Conn

MIGRATION = 0x7265_7370
"""Taken by migrate(): ``resp``."""

LEADER = {"reconciler": 0x7265_7370_0001, "checkpointer": 0x7265_7370_0002}
"""``resp`` and a role number."""

KEY_NS = 0x6B65_7973
"""``keys``: one lock per (control, key), named by key_name()."""

REPLICA_NS = 0x7265_7069
"""``repi``: one lock per replica name."""


def key_name(control: str, key: str) -> str:
    """The name a key's lock is taken on; key_name_sql() writes the same in SQL."""
    return f"{control}/{key}"


def key_name_sql(control: str, key: str) -> str:
    """key_name() as an SQL expression over two text expressions (columns or parameters)."""
    return f"{control} || '/' || {key}"


def key_lock_sql(control: str, key: str) -> str:
    """The two lock keys of a (control, key) lock, as SQL arguments to a pg_*advisory* call."""
    return f"{KEY_NS}, hashtext({key_name_sql(control, key)})"


MIGRATE_SQL = f"SELECT pg_advisory_xact_lock({MIGRATION})"

TRY_LEADER_SQL = "SELECT pg_try_advisory_lock($1)"
WAIT_LEADER_SQL = "SELECT pg_advisory_lock({lock_id})"
"""A follower waits for the role in the server, bounded by lock_timeout."""
FREE_LEADER_SQL = "SELECT pg_advisory_unlock($1)"

HOLD_KEY_SQL = f"SELECT pg_try_advisory_lock({key_lock_sql('$1::text', '$2::text')})"
FREE_KEY_SQL = f"SELECT pg_advisory_unlock({key_lock_sql('$1::text', '$2::text')})"
KEY_FREE_IN_XACT_SQL = f"pg_try_advisory_xact_lock({key_lock_sql('control', 'key')})"
"""An expression over a row's ``control`` and ``key`` columns: the key's lock, taken and
released with the transaction (a claim asks it only to learn whether a person holds it)."""

TRY_REPLICA_SQL = f"SELECT pg_try_advisory_lock({REPLICA_NS}, hashtext($1))"
FREE_REPLICA_SQL = f"SELECT pg_advisory_unlock({REPLICA_NS}, hashtext($1))"

EVIDENCE_SQL = """
SELECT pg_advisory_xact_lock(hashtextextended('responder-evidence-' || id, 0))
FROM unnest($1::bigint[]) AS l(id)
"""
"""One seal per incident at a time; taken in the order given (callers sort the ids)."""


async def hold_key(conn: Conn, control: str, key: str) -> bool:
    """Take a key's lock for this session if no one holds it; whether it was taken."""
    return bool(await conn.fetchval(HOLD_KEY_SQL, control, key))


async def free_key(conn: Conn, control: str, key: str) -> None:
    await conn.fetchval(FREE_KEY_SQL, control, key)


async def try_replica_name(conn: Conn, name: str, timeout_s: float | None = None) -> bool:
    return bool(await conn.fetchval(TRY_REPLICA_SQL, name, timeout=timeout_s))


async def free_replica_name(conn: Conn, name: str) -> None:
    await conn.fetchval(FREE_REPLICA_SQL, name)


async def try_leader(conn: Conn, role: str, timeout_s: float | None = None) -> bool:
    return bool(await conn.fetchval(TRY_LEADER_SQL, LEADER[role], timeout=timeout_s))


async def free_leader(conn: Conn, role: str) -> None:
    await conn.execute(FREE_LEADER_SQL, LEADER[role])


async def migration(conn: Conn) -> None:
    """Wait for the migration lock, held until this transaction ends."""
    await conn.execute(MIGRATE_SQL)


async def seal_incidents(conn: Conn, incident_ids: list[int]) -> None:
    """Wait for each incident's seal lock in turn, held until this transaction ends."""
    await conn.execute(EVIDENCE_SQL, incident_ids)
