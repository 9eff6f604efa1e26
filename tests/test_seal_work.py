"""What sealing a bundle costs in the writer, for the bytes and proofs the slower way made."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from responder.audit import bundle_proofs
from responder.store.actionlog import Head
from responder.tlog import merkle
from responder.tlog.merkle import Frontier, NodeKey, leaf_hash
from responder.tlog.records import record_text


class _Chain:
    """What attach() asks of the writer's appender: the tree as committed, its nodes, and
    the transaction's memo (its checkpoint already signed)."""

    def __init__(self, frontier: Frontier, nodes: dict[NodeKey, bytes]) -> None:
        self.notary = object()
        self.committed = Head(frontier.size, "", frontier)
        self.memo: dict[str, Any] = {"checkpoint": "a note"}
        self._nodes = nodes

    async def nodes(self, keys: Any) -> dict[NodeKey, bytes]:
        return {k: self._nodes[k] for k in keys}


class _Bodies:
    def __init__(self, bodies: dict[int, str]) -> None:
        self.bodies = bodies

    async def fetch(self, query: str, seqs: list[int]) -> list[dict[str, Any]]:
        return [{"seq": s, "body": self.bodies[s]} for s in seqs]


async def test_bundles_in_one_transaction_fold_each_proof_hash_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Bundles sealed in one transaction get each record's RFC 9162 inclusion proof, and the
    legacy record its stored bytes, while a range of leaves that several proofs share is
    folded from its subtrees only once."""
    frontier = Frontier()
    nodes: dict[NodeKey, bytes] = {}
    records: dict[int, dict[str, Any]] = {}
    bodies: dict[int, str] = {}
    for seq in range(1, 301):
        record = {"seq": seq, "kind": "outcome", "detail": {"n": seq}}
        # Record 290 is as an older version wrote it: not RFC 8785's bytes.
        body = json.dumps(record) if seq == 290 else record_text(record)
        records[seq], bodies[seq] = record, body
        nodes.update(frontier.append(leaf_hash(body.encode())))
    chain = _Chain(frontier, nodes)
    folds = 0
    real = merkle.fold

    def counting(hashes: Any) -> bytes:
        nonlocal folds
        folds += 1
        return real(hashes)

    monkeypatch.setattr(merkle, "fold", counting)
    groups = [range(280, 292), range(286, 298), range(1, 4)]
    bundles: list[dict[str, Any]] = [{"actions": [{**records[s], "hash": "h"} for s in g]}
                                     for g in groups]
    for bundle in bundles:
        await bundle_proofs.attach(_Bodies(bodies), chain, bundle, ())  # type: ignore[arg-type]
    monkeypatch.undo()
    wanted = {r for g in groups for s in g for r in merkle.inclusion_ranges(s - 1, 300)}
    assert folds == len(wanted)
    for group, bundle in zip(groups, bundles, strict=True):
        assert bundle["audit"]["tree_size"] == 300
        for seq, entry in zip(group, bundle["audit"]["records"], strict=True):
            proof = merkle.proof_from(merkle.inclusion_ranges(seq - 1, 300), nodes.__getitem__)
            assert entry == {"seq": seq, "tree_size": 300,
                             "proof": [base64.b64encode(p).decode() for p in proof],
                             **({"record": bodies[seq]} if seq == 290 else {})}
            assert merkle.verify_inclusion(seq - 1, 300, leaf_hash(bodies[seq].encode()),
                                           proof, frontier.root())
