"""The reads of the ``responder`` commands that look into the store directly."""

from __future__ import annotations

from dataclasses import dataclass

from responder.store.types import Conn

LAST_SEQ_SQL = "SELECT coalesce(max(seq), 0) FROM action_log"
RECORD_BODY_SQL = "SELECT body FROM action_log WHERE seq = $1"
COVERING_CHECKPOINT_SQL = ("SELECT note FROM checkpoints WHERE tree_size >= $1"
                           " ORDER BY tree_size DESC LIMIT 1")
EVIDENCE_SQL = ("SELECT version, digest, prev_digest, body FROM evidence WHERE incident_id = $1"
                " AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1")


async def last_seq(conn: Conn) -> int:
    """The newest action-log record's seq (0: the log is empty)."""
    seq: int = await conn.fetchval(LAST_SEQ_SQL)
    return seq


async def record_body(conn: Conn, seq: int) -> str | None:
    """The stored text of record ``seq``, exactly as it was hashed."""
    body: str | None = await conn.fetchval(RECORD_BODY_SQL, seq)
    return body


async def covering_checkpoint(conn: Conn, seq: int) -> str | None:
    """The note of the newest stored checkpoint whose tree includes record ``seq``."""
    note: str | None = await conn.fetchval(COVERING_CHECKPOINT_SQL, seq)
    return note


@dataclass(frozen=True)
class SealedRow:
    version: int
    digest: str
    prev_digest: str | None
    body: str


async def sealed_evidence(conn: Conn, incident_id: int, version: int | None) -> SealedRow | None:
    """One sealed version of an incident's evidence (default: the latest)."""
    row = await conn.fetchrow(EVIDENCE_SQL, incident_id, version)
    if row is None:
        return None
    return SealedRow(row["version"], row["digest"], row["prev_digest"], row["body"])
