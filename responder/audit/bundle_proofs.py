"""The ``audit`` part of a sealed bundle: a signed checkpoint covering every record the
bundle holds, and each record's inclusion proof in that checkpoint's tree."""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import Any

from responder.audit import checkpoints
from responder.config import SinkSpec
from responder.store import audit
from responder.store.actionlog import ChainAppender, HeadStale
from responder.store.types import Conn
from responder.tlog.merkle import inclusion_paths, keys_for, leaf_hash, range_hash
from responder.tlog.records import record_text


def _record(action: dict[str, Any]) -> dict[str, Any]:
    """A bundle action as its record was: the bundle adds the chain ``hash`` beside it."""
    record = dict(action)
    record.pop("hash", None)
    return record


async def attach(conn: Conn, chain: ChainAppender, bundle: dict[str, Any],
                 sinks: Sequence[SinkSpec]) -> None:
    """Add ``bundle["audit"]``, in the writer's transaction, for the tree as committed when
    it began. HeadStale if another replica appended records this bundle holds since.

    The checkpoint it signs goes to the sinks on its own too, like every checkpoint: it may
    be the one that covers a SEV1's outcome, so no later checkpoint is signed for that.
    """
    notary = chain.notary
    seqs = [a["seq"] for a in bundle["actions"]]
    if notary is None or not seqs:
        return
    size = chain.committed.frontier.size
    if max(seqs) > size:
        raise HeadStale(f"bundle holds record {max(seqs)}; this writer's tree ends at {size}")
    note = chain.memo.get("checkpoint")
    if note is None:  # one checkpoint for every bundle sealed in this transaction
        checkpoint, note = checkpoints.signed(notary, size, chain.committed.frontier.root())
        await checkpoints.store(conn, checkpoint, note, "bundle", sinks)
        chain.memo["checkpoint"] = note
    ranges = {i + 1: r for i, r in inclusion_paths([s - 1 for s in seqs], size).items()}
    # A proof hash is that of a range of leaves, which never changes, and bundles sealed
    # together or one after another share most of their ranges: each is folded and spelt
    # once. Likewise a record found to be the bytes of its leaf is not written out again.
    cache = chain.cache
    spelt = chain.memo.setdefault("proof_hashes", {}) if cache is None else cache.proof_hashes
    checked = {} if cache is None else cache.record_leaves
    todo = {r for rs in ranges.values() for r in rs if r not in spelt}
    fresh = [a for a in bundle["actions"] if a.get("hash") is None
             or checked.get(a["seq"]) != a["hash"]]
    found = await chain.nodes(keys_for(todo) | {(0, a["seq"] - 1) for a in fresh})
    for a, b in todo:
        spelt[a, b] = binascii.b2a_base64(range_hash(a, b, found.__getitem__),
                                          newline=False).decode()
    texts: dict[int, str] = {}
    legacy: set[int] = set()
    for action in fresh:
        seq = action["seq"]
        texts[seq] = text = record_text(_record(action))
        if leaf_hash(text.encode()) != found[(0, seq - 1)]:
            legacy.add(seq)
        elif action.get("hash") is not None:
            checked[seq] = action["hash"]
    if legacy:  # written before records were RFC 8785: carry their exact bytes
        texts.update(await audit.bodies(conn, sorted(legacy)))
    bundle["audit"] = {
        "checkpoint": note,
        "tree_size": size,
        "records": [{"seq": s, "tree_size": size, "proof": [spelt[r] for r in ranges[s]],
                     **({"record": texts[s]} if s in legacy else {})}
                    for s in seqs],
    }
