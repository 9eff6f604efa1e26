"""The action log's Merkle tree in PostgreSQL: stored nodes, roots and proofs.

Every complete subtree is a row of ``merkle_nodes``, written with the records it covers, so
a root or proof at any size reads O(log n) rows by primary key and never a record.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable, Sequence

from responder.errors import AuditChainError
from responder.store.types import Conn
from responder.tlog.merkle import (
    Frontier,
    NodeKey,
    Range,
    consistency_ranges,
    inclusion_ranges,
    keys_for,
    proof_from,
    range_keys,
)

SIZE_SQL = "SELECT coalesce(max(idx) + 1, 0) FROM merkle_nodes WHERE level = 0"

NODES_SQL = """
SELECT n.level, n.idx, n.hash FROM merkle_nodes n
JOIN unnest($1::smallint[], $2::bigint[]) AS k(level, idx) ON n.level = k.level AND n.idx = k.idx
"""

INSERT_SQL = """
INSERT INTO merkle_nodes (level, idx, hash)
SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])
"""


class NodeCache:
    """Committed nodes one writer has written or read, so that a proof need not read them
    again. A committed node never changes (records are never rewritten), so nothing here
    goes stale; only nodes known to be committed may be added.

    Nodes below HIGH_LEVEL are many and a proof wants the recent ones: they are kept in two
    generations of MAX_LOW, and when the newer is full the older is dropped, so the newest
    MAX_LOW are always there. Those above are few (one per 2**HIGH_LEVEL records) and every
    proof wants some of them; past MAX_HIGH they are all dropped and learnt again.

    It also keeps what bundle proofs learnt of the committed tree, for the same reason and
    up to MAX_MEMO of each: a proof hash is that of a range of leaves, and a record checked
    to be the bytes of its leaf stays so. About 250 bytes an entry: some 20 MiB at most.
    """

    HIGH_LEVEL = 8
    MAX_LOW = 8_192
    MAX_HIGH = 32_768
    MAX_MEMO = 8_192

    def __init__(self) -> None:
        self._low: dict[NodeKey, bytes] = {}
        self._older: dict[NodeKey, bytes] = {}
        self._high: dict[NodeKey, bytes] = {}
        self.size = 0
        """Leaves up to which nodes were added: a log shorter than this was not ours."""
        self.proof_hashes: dict[Range, str] = {}
        """Hashes of leaf ranges, base64 as a bundle's proofs spell them."""
        self.record_leaves: dict[int, str] = {}
        """seq -> chain hash of records whose leaf is record_text() of what they hold."""

    def add(self, made: Iterable[tuple[NodeKey, bytes]]) -> None:
        low, high, top = self._low, self._high, self.HIGH_LEVEL
        size = self.size
        for key, digest in made:
            level, index = key
            (high if level >= top else low)[key] = digest
            size = max(size, (index + 1) << level)
        self.size = size
        if len(low) >= self.MAX_LOW:
            # A generation at a time: deleting the oldest keys one by one would make every
            # next(iter()) walk the holes they leave at the dict's front.
            self._older = low if len(low) == self.MAX_LOW else dict(
                itertools.islice(low.items(), len(low) - self.MAX_LOW, None))
            self._low = {}
        if len(high) > self.MAX_HIGH:
            high.clear()
        if len(self.proof_hashes) > self.MAX_MEMO:
            self.proof_hashes.clear()
        if len(self.record_leaves) > self.MAX_MEMO:
            self.record_leaves.clear()

    def get(self, key: NodeKey) -> bytes | None:
        if key[0] >= self.HIGH_LEVEL:
            return self._high.get(key)
        found = self._low.get(key)
        return self._older.get(key) if found is None else found

    def clear(self) -> None:
        self._low.clear()
        self._older.clear()
        self._high.clear()
        self.proof_hashes.clear()
        self.record_leaves.clear()
        self.size = 0


async def tree_size(conn: Conn) -> int:
    size: int = await conn.fetchval(SIZE_SQL)
    return size


async def nodes(conn: Conn, keys: Iterable[NodeKey],
                cache: NodeCache | None = None) -> dict[NodeKey, bytes]:
    """Stored hashes of the named nodes; AuditChainError if any is missing. With a cache,
    only the nodes it lacks are read, and the cache learns them: pass one only where every
    node read is committed (not a transaction that inserted nodes of its own)."""
    found: dict[NodeKey, bytes] = {}
    wanted = []
    for key in sorted(set(keys)):
        known = cache.get(key) if cache is not None else None
        if known is None:
            wanted.append(key)
        else:
            found[key] = known
    if not wanted:
        return found
    rows = await conn.fetch(NODES_SQL, [k[0] for k in wanted], [k[1] for k in wanted])
    read = {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}
    if len(read) != len(wanted):
        missing = next(k for k in wanted if k not in read)
        raise AuditChainError(f"tree node {missing} is missing from merkle_nodes")
    if cache is not None:
        cache.add(read.items())
    found.update(read)
    return found


def columns(made: Sequence[tuple[NodeKey, bytes]]) -> list[list[int] | list[bytes]]:
    """INSERT_SQL's arguments: levels, indexes and hashes."""
    return [[k[0] for k, _ in made], [k[1] for k, _ in made], [h for _, h in made]]


async def insert(conn: Conn, made: list[tuple[NodeKey, bytes]]) -> None:
    if made:
        await conn.execute(INSERT_SQL, *columns(made))


async def frontier(conn: Conn, size: int) -> Frontier:
    """The right edge of the tree at ``size``, from which appends continue."""
    keys = range_keys(0, size)
    found = await nodes(conn, keys)
    return Frontier(size, [(k, found[k]) for k in keys])


async def root(conn: Conn, size: int) -> bytes:
    return (await frontier(conn, size)).root()


async def inclusion(conn: Conn, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) for the leaf at 0-based ``index``."""
    ranges = inclusion_ranges(index, size)
    found = await nodes(conn, keys_for(ranges))
    return proof_from(ranges, found.__getitem__)


async def inclusions(conn: Conn, indexes: Iterable[int], size: int) -> dict[int, list[bytes]]:
    """Inclusion proofs for many leaves of one tree, with one read of the nodes they need."""
    plans = {i: inclusion_ranges(i, size) for i in set(indexes)}
    found = await nodes(conn, {k for r in plans.values() for k in keys_for(r)})
    return {i: proof_from(r, found.__getitem__) for i, r in plans.items()}


async def consistency(conn: Conn, old: int, new: int) -> list[bytes]:
    ranges = consistency_ranges(old, new)
    found = await nodes(conn, keys_for(ranges))
    return proof_from(ranges, found.__getitem__)


async def level(conn: Conn, lvl: int, batch: int = 10_000) -> AsyncIterator[tuple[int, bytes]]:
    """The stored nodes of one level in index order, a page at a time."""
    after = -1
    while True:
        rows = await conn.fetch("SELECT idx, hash FROM merkle_nodes WHERE level = $1"
                                " AND idx > $2 ORDER BY idx LIMIT $3", lvl, after, batch)
        if not rows:
            return
        for r in rows:
            yield r["idx"], bytes(r["hash"])
        after = rows[-1]["idx"]


async def max_level(conn: Conn) -> int:
    top: int = await conn.fetchval("SELECT coalesce(max(level), -1) FROM merkle_nodes")
    return top
