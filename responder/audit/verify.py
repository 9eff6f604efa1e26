"""Check the stored tree against the records, and today's log against signed checkpoints.

The tree check trusts nothing stored: every leaf is hashed again from its record, and every
stored node above is checked against the two below it, level by level, so a record or node
edited in place is named. Someone able to rewrite the database can still recompute all of
it; what they cannot do is sign, so a checkpoint kept outside (a sink, an auditor's copy)
no longer holds against their log: its size is gone or its root differs at that size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from responder.errors import AuditChainError, CheckpointInvalid
from responder.store import audit, tree
from responder.store.types import Conn
from responder.tlog.merkle import EMPTY_ROOT, leaf_hash, node_hash, verify_consistency
from responder.tlog.note import Checkpoint, Verifier, open_checkpoint


@dataclass(frozen=True)
class TreeReport:
    size: int
    root: bytes


@dataclass(frozen=True)
class Held:
    """A checkpoint that today's log still extends, with the proof that says so."""

    label: str
    checkpoint: Checkpoint
    proof: list[bytes]


async def _records(conn: Conn, batch: int = 5000) -> AsyncIterator[tuple[int, str]]:
    after = 0
    while True:
        rows = await audit.records_after(conn, after, batch)
        if not rows:
            return
        for row in rows:
            yield row
        after = rows[-1][0]


async def verify_tree(conn: Conn) -> TreeReport:
    """Raise AuditChainError at the first record or node the stored tree disagrees on."""
    leaves = tree.level(conn, 0)
    size = 0
    async for seq, body in _records(conn):
        if seq != size + 1:
            raise AuditChainError(f"record {size + 1} is missing (next is {seq})")
        stored = await anext(leaves, None)
        if stored is None or stored[0] != size:
            raise AuditChainError(f"record {seq}: the tree has no leaf for it")
        if stored[1] != leaf_hash(body.encode()):
            raise AuditChainError(f"record {seq}: its tree leaf does not match its body")
        size += 1
    if (extra := await anext(leaves, None)) is not None:
        raise AuditChainError(f"the tree has a leaf {extra[0]} past the last record {size}")
    count, lvl = size, 0
    while count > 1:
        lower, upper = tree.level(conn, lvl), tree.level(conn, lvl + 1)
        for i in range(count // 2):
            left, right = await anext(lower), await anext(lower)
            node = await anext(upper, None)
            if node is None or node[0] != i or node[1] != node_hash(left[1], right[1]):
                raise AuditChainError(f"tree node ({lvl + 1}, {i}) does not match the two"
                                      " below it")
        if (extra := await anext(upper, None)) is not None:
            raise AuditChainError(f"tree node ({lvl + 1}, {extra[0]}) covers no records")
        count, lvl = count // 2, lvl + 1
    if await tree.max_level(conn) > max(lvl, 0) or (size == 0 and await tree.tree_size(conn)):
        raise AuditChainError("the tree has nodes above its root")
    return TreeReport(size, await tree.root(conn, size))


async def check_checkpoint(conn: Conn, report: TreeReport, label: str, note: str,
                           verifier: Verifier, origin: str) -> Held:
    """Prove that the log, as verify_tree found it, extends one signed checkpoint."""
    try:
        checkpoint = open_checkpoint(note, verifier, origin)
    except CheckpointInvalid as e:
        raise CheckpointInvalid(f"checkpoint {label}: {e}") from e
    if checkpoint.size > report.size:
        raise CheckpointInvalid(f"checkpoint {label} no longer holds: it covers"
                                f" {checkpoint.size} records, the log has {report.size}")
    if checkpoint.size == 0:
        if checkpoint.root != EMPTY_ROOT:
            raise CheckpointInvalid(f"checkpoint {label}: an empty tree with a root")
        return Held(label, checkpoint, [])
    proof = await tree.consistency(conn, checkpoint.size, report.size)
    if not verify_consistency(checkpoint.size, report.size, checkpoint.root, report.root,
                              proof):
        raise CheckpointInvalid(f"checkpoint {label} no longer holds: the log's first"
                                f" {checkpoint.size} records are not the ones it signed")
    return Held(label, checkpoint, proof)
