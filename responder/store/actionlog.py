"""The append-only action log: canonical records, the leaves of a Merkle tree (store/tree.py).

Each record's bytes are its RFC 8785 (JCS) JSON. They are leaf ``seq - 1`` of an RFC 9162
tree whose complete subtrees are written in the same transaction as the records. Each record
also still carries the SHA-256 chain of the records before it (``prev_hash``/``hash``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from responder.errors import AuditChainError
from responder.store import tree
from responder.store.kinds import Kind
from responder.store.types import Conn
from responder.tlog.merkle import Frontier, NodeKey, leaf_hash
from responder.tlog.records import plain, plain_json, record_text

if TYPE_CHECKING:
    from responder.tlog.note import Notary

GENESIS = "0" * 64
INDEXED = ("incident_id", "rule_id", "control", "key", "step_id", "correlation_id")


_INT64 = 2**63 - 1


def canonical(data: Mapping[str, Any], *, is_plain: bool | None = None) -> str:
    """The one JSON spelling of a record that its hash covers. ``is_plain``: what
    canonical_plain(data) is, when the caller knows it already."""
    if canonical_plain(data) if is_plain is None else is_plain:
        return plain_json(data)  # the same bytes, faster
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def canonical_plain(data: Any) -> bool:
    """Whether canonical() may spell data, or any part of it, the faster way."""
    return plain(data, _INT64)


def chain_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """A record to append; fields beyond the indexed ones go in ``detail``."""

    kind: str
    incident_id: int | None = None
    rule_id: str | None = None
    control: str | None = None
    key: str | None = None
    step_id: int | None = None
    detail: Mapping[str, Any] | None = None
    correlation_id: str | None = None


HEAD_SQL = "SELECT seq, hash FROM action_log ORDER BY seq DESC LIMIT 1"

APPEND_SQL = """
WITH records AS (
    INSERT INTO action_log (seq, at, kind, incident_id, rule_id, control, key, step_id, body,
                            prev_hash, hash, correlation_id)
    SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::bigint[],
                         $5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[],
                         $10::text[], $11::text[], $12::text[])
)
INSERT INTO merkle_nodes (level, idx, hash)
SELECT * FROM unnest($13::smallint[], $14::bigint[], $15::bytea[])
"""
"""The records and the tree nodes they complete, in one statement (one round trip)."""


class HeadStale(Exception):
    """Someone appended since this writer's head was read: retry from the real head."""


@dataclass(frozen=True)
class Head:
    """Where the next append continues: last seq, its chain hash, the tree's right edge."""

    seq: int
    hash: str
    frontier: Frontier


async def read_head(conn: Conn) -> Head:
    """The head as committed; inside an append's transaction, after lock_head()."""
    if conn.is_in_transaction():
        return await _head(conn)
    # One snapshot, so the last record and the tree's edge are of the same commit.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _head(conn)


async def lock_head(conn: Conn) -> int:
    """Wait for the append lock (held to the end of the transaction); the last seq now."""
    seq: int = await conn.fetchval("SELECT action_log_append_head()")
    return seq


_HEX = re.compile(r"[0-9a-f]{64}")
HEAD_MOVED = "RS001"
"""What action_log_append_at() raises when the head is not the one expected."""


async def begin_at(conn: Conn, head: Head) -> bool:
    """Begin a transaction holding the append lock if the log still ends at ``head``, in
    one round trip; False (and no transaction) if another writer appended since."""
    if not _HEX.fullmatch(head.hash):
        raise AuditChainError(f"a chain hash that is not hex: {head.hash!r}")
    try:
        # Literals, not parameters: a query of two statements takes none. Both are checked
        # above to be an integer and hex digits.
        await conn.execute(f"BEGIN; SELECT action_log_append_at({int(head.seq)},"
                           f" '{head.hash}')")
    except asyncpg.PostgresError as e:
        if conn.is_in_transaction():
            await conn.execute("ROLLBACK")
        if e.sqlstate == HEAD_MOVED:
            return False
        raise
    return True


async def _head(conn: Conn) -> Head:
    row = await conn.fetchrow(HEAD_SQL)
    seq, digest = (row["seq"], row["hash"]) if row else (0, GENESIS)
    size = await tree.tree_size(conn)
    if size > seq:
        raise AuditChainError(f"the tree has {size} leaves but the log {seq} records")
    return Head(seq, digest, await tree.frontier(conn, size))


class ChainAppender:
    """Collects entries for the caller's transaction and writes them in one statement.

    The writer takes the append lock (lock_head) before it starts, so the head is the real
    one. Sequence numbers and tree nodes are primary keys all the same: a writer that did
    not take the lock (an older version) makes the insert fail on a unique violation, and
    the writer retries from the real head.
    """

    def __init__(self, conn: Conn, rules_hash: str, head: Head,
                 notary: Notary | None = None, signed_hash: str = "",
                 cache: tree.NodeCache | None = None) -> None:
        self.conn = conn
        self.cache = cache
        """Committed nodes the writer knows; nodes(), not the store, answers from it."""
        self.rules_hash = rules_hash
        # What `rules sign` signed (every file); differs from rules_hash when packs are off.
        self.signed_hash = signed_hash
        self.notary = notary
        """Who signs checkpoints written in this transaction (for bundles); None: nobody."""
        self.committed = head
        """The head this transaction started from: what the stored tree already holds."""
        self.head = Head(head.seq, head.hash, head.frontier.copy())
        self._rows: list[tuple[Any, ...]] = []
        self._nodes: list[tuple[tuple[int, int], bytes]] = []
        self.written: list[tuple[tuple[int, int], bytes]] = []
        """Nodes flushed in this transaction: committed, and so cacheable, once it is."""
        self.memo: dict[str, Any] = {}
        """What units of this transaction share (the bundles' checkpoint)."""
        self.commit_hooks: list[Callable[[], None]] = []
        self.incidents: set[int] = set()
        """Incidents these entries changed (a seal itself is no change to seal again)."""

    async def catch_up(self) -> None:
        """Add the leaves of records written without their tree nodes (by a replica of a
        version before the tree), so that the tree again covers every record."""
        frontier = self.head.frontier
        if frontier.size >= self.head.seq:
            return
        rows = await self.conn.fetch("SELECT seq, body FROM action_log WHERE seq > $1"
                                     " ORDER BY seq", frontier.size)
        for row in rows:
            if row["seq"] != frontier.size + 1:
                raise AuditChainError(f"record {frontier.size + 1} is missing")
            self._nodes += frontier.append(leaf_hash(row["body"].encode()))

    async def nodes(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        """Hashes of committed tree nodes (of the tree as this transaction began)."""
        return await tree.nodes(self.conn, keys, self.cache)

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run hook (a metric, a log line) only once the entries are committed, so a batch
        that is rolled back and retried does not count or log twice."""
        self.commit_hooks.append(hook)

    def add(self, *entries: Entry) -> None:
        """Chain entries now; they reach the table at flush(), before the commit."""
        seq, prev_hash, frontier = self.head.seq, self.head.hash, self.head.frontier
        at = datetime.now(UTC)
        at_text = at.isoformat()
        signed = {"rules_signed_hash": self.signed_hash} if self.signed_hash else {}
        for entry in entries:
            seq += 1
            if entry.incident_id is not None and entry.kind != Kind.EVIDENCE_SEALED:
                self.incidents.add(entry.incident_id)
            record = {
                "seq": seq,
                "at": at_text,
                # The kind as text, as record_text() would spell it: a Kind (a str subclass)
                # would send every record down its slow path for the same bytes.
                "kind": str(entry.kind),
                "rules_hash": self.rules_hash,
                **signed,
                "incident_id": entry.incident_id, "rule_id": entry.rule_id,
                "control": entry.control, "key": entry.key, "step_id": entry.step_id,
                "correlation_id": entry.correlation_id,
                "detail": dict(entry.detail or {}),
            }
            body = record_text(record)
            digest = chain_hash(prev_hash, body)
            self._nodes += frontier.append(leaf_hash(body.encode()))
            self._rows.append((seq, at, entry.kind, entry.incident_id, entry.rule_id,
                               entry.control, entry.key, entry.step_id, body, prev_hash,
                               digest, entry.correlation_id))
            prev_hash = digest
        self.head = Head(seq, prev_hash, frontier)

    async def flush(self) -> None:
        made, self._nodes = self._nodes, []
        rows, self._rows = self._rows, []
        if rows:
            columns = [list(column) for column in zip(*rows, strict=True)]
            await self.conn.execute(APPEND_SQL, *columns, *tree.columns(made))
        else:  # catch_up's nodes alone
            await tree.insert(self.conn, made)
        self.written += made


@dataclass(frozen=True)
class VerifyReport:
    records: int
    head_hash: str


async def _rows(conn: Conn, batch: int = 1000) -> AsyncIterator[asyncpg.Record]:
    after = 0
    while True:
        rows = await conn.fetch(
            "SELECT seq, kind, incident_id, rule_id, control, key, step_id, correlation_id,"
            " body, prev_hash, hash FROM action_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            after, batch,
        )
        if not rows:
            return
        for row in rows:
            yield row
        after = rows[-1]["seq"]


async def verify_chain(conn: Conn) -> VerifyReport:
    """Walk the whole chain; raise AuditChainError naming the first record that is wrong."""
    expected_seq, prev = 1, GENESIS
    async for row in _rows(conn):
        seq = row["seq"]
        if seq != expected_seq:
            raise AuditChainError(f"record {expected_seq} is missing (next is {seq})")
        if row["prev_hash"] != prev:
            raise AuditChainError(f"record {seq}: prev_hash does not match record {seq - 1}")
        if chain_hash(prev, row["body"]) != row["hash"]:
            raise AuditChainError(f"record {seq}: hash does not match its body")
        try:
            body = json.loads(row["body"])
        except json.JSONDecodeError as e:
            raise AuditChainError(f"record {seq}: body is not JSON") from e
        if body.get("seq") != seq or body.get("kind") != row["kind"] or any(
            body.get(f) != row[f] for f in INDEXED
        ):
            raise AuditChainError(f"record {seq}: columns differ from the hashed body")
        prev, expected_seq = row["hash"], seq + 1
    return VerifyReport(expected_seq - 1, prev)
