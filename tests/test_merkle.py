"""RFC 9162 tree arithmetic and C2SP signed checkpoints, against published vectors."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.errors import CheckpointInvalid
from responder.tlog import merkle
from responder.tlog.note import Checkpoint, Signer, Verifier, open_checkpoint
from responder.tlog.records import record_text
from tests.conftest import LOCAL_FIXTURES

# Transcribed from transparency-dev/merkle's testdata (Apache-2.0); the file names its commit.
VECTORS = json.loads((LOCAL_FIXTURES / "rfc9162" / "vectors.json").read_text())


def _b(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: c["file"])
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    """Each published inclusion proof verifies, and each corrupted one is refused."""
    ok = merkle.verify_inclusion(case["leafIdx"], case["treeSize"], _b(case["leafHash"]),
                            [_b(p) for p in case["proof"] or []], _b(case["root"]))
    assert ok is not case["wantErr"]


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: c["file"])
def test_consistency_vectors(case: dict[str, Any]) -> None:
    """Each published consistency proof verifies, and each corrupted one is refused."""
    ok = merkle.verify_consistency(case["size1"], case["size2"], _b(case["root1"]),
                              _b(case["root2"]), [_b(p) for p in case["proof"] or []])
    assert ok is not case["wantErr"]


def _tree(leaves: list[bytes]) -> tuple[list[bytes], dict[merkle.NodeKey, bytes]]:
    frontier, roots = merkle.Frontier(), [merkle.EMPTY_ROOT]
    nodes: dict[merkle.NodeKey, bytes] = {}
    for leaf in leaves:
        nodes.update(frontier.append(leaf))
        roots.append(frontier.root())
    return roots, nodes


def test_roots_and_our_proofs_match_the_reference_tree() -> None:
    """Appending the reference leaves gives the published roots, and every proof we build
    between sizes 1..8 and for every leaf is the one the published proofs verify as."""
    leaves = [merkle.leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaf_inputs_hex"]]
    roots, nodes = _tree(leaves)
    assert [r.hex() for r in roots] == VECTORS["root_hashes_hex"]
    published = {(c["leafIdx"], c["treeSize"]): [_b(p) for p in c["proof"] or []]
                 for c in VECTORS["inclusion"] if c["desc"] == "happy path"}
    for (index, size), proof in published.items():
        assert merkle.proof_from(merkle.inclusion_ranges(index, size), nodes.__getitem__) == proof
    consistent = {(c["size1"], c["size2"]): [_b(p) for p in c["proof"] or []]
                  for c in VECTORS["consistency"]
                  if c["desc"] == "happy path" and c["size1"] > 0}
    for (old, new), proof in consistent.items():
        assert merkle.proof_from(merkle.consistency_ranges(old, new), nodes.__getitem__) == proof


batches = st.lists(st.lists(st.binary(max_size=8), min_size=1, max_size=9), min_size=1,
                   max_size=12)


@settings(max_examples=60, deadline=None)
@given(batches=batches, data=st.data())
def test_random_batches_prove_and_every_flipped_byte_fails(batches: list[list[bytes]],
                                                           data: st.DataObject) -> None:
    """Appended in random batches, proofs between random sizes and for random leaves verify,
    and changing any single byte of any of them makes it fail."""
    frontier, sizes = merkle.Frontier(), []
    nodes: dict[merkle.NodeKey, bytes] = {}
    roots: dict[int, bytes] = {}
    for batch in batches:
        for item in batch:
            nodes.update(frontier.append(merkle.leaf_hash(item)))
        sizes.append(frontier.size)
        roots[frontier.size] = frontier.root()
    leaves = [item for batch in batches for item in batch]
    old = data.draw(st.sampled_from(sizes))
    new = data.draw(st.sampled_from([s for s in sizes if s >= old]))
    proof = merkle.proof_from(merkle.consistency_ranges(old, new), nodes.__getitem__)
    assert merkle.verify_consistency(old, new, roots[old], roots[new], proof)
    index = data.draw(st.integers(0, new - 1))
    path = merkle.proof_from(merkle.inclusion_ranges(index, new), nodes.__getitem__)
    leaf = merkle.leaf_hash(leaves[index])
    assert merkle.verify_inclusion(index, new, leaf, path, roots[new])
    for i, item in enumerate(proof):
        for j in range(len(item)):
            bad = [*proof[:i], item[:j] + bytes([item[j] ^ 0x01]) + item[j + 1:], *proof[i + 1:]]
            assert not merkle.verify_consistency(old, new, roots[old], roots[new], bad)
    for i, item in enumerate(path):
        for j in range(len(item)):
            bad = [*path[:i], item[:j] + bytes([item[j] ^ 0x80]) + item[j + 1:], *path[i + 1:]]
            assert not merkle.verify_inclusion(index, new, leaf, bad, roots[new])


def test_checkpoint_note_round_trip_and_refusals() -> None:
    """A signed checkpoint opens with its key; a forged, missing or foreign signature does not."""
    signer = Signer.generate("example.org/log")
    verifier = Verifier.parse(str(signer.verifier))
    assert Signer.parse(str(signer)).verifier.key_id == signer.verifier.key_id
    checkpoint = Checkpoint("example.org/log", 5, b"\x07" * 32)
    note = signer.sign(checkpoint.body())
    assert note.startswith("example.org/log\n5\nBwcH")
    assert open_checkpoint(note, verifier, "example.org/log") == checkpoint
    assert signer.sign(checkpoint.body()) == note  # every replica signs the same note
    forged = note.replace("\n5\n", "\n6\n")
    with pytest.raises(CheckpointInvalid, match="invalid"):
        open_checkpoint(forged, verifier)
    with pytest.raises(CheckpointInvalid, match="no signature"):
        open_checkpoint(checkpoint.body(), verifier)
    other = Signer.generate("example.org/log")
    with pytest.raises(CheckpointInvalid, match="missing"):
        open_checkpoint(other.sign(checkpoint.body()), verifier)
    with pytest.raises(CheckpointInvalid, match="not 'elsewhere'"):
        open_checkpoint(note, verifier, "elsewhere")


def test_record_bytes_are_rfc8785() -> None:
    """Records are spelt as RFC 8785 says: sorted keys, ES6 numbers, minimal escapes; numbers
    it cannot spell become strings rather than failing the write."""
    assert record_text({"b": 1.0, "a": "é\n", "c": [1e21, 0.1]}) == (
        '{"a":"é\\n","b":1,"c":[1e+21,0.1]}')
    assert record_text({"n": float("nan"), "big": 2**60}) == (
        '{"big":"1152921504606846976","n":"nan"}')


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(st.text(), json_values, max_size=6))
def test_record_bytes_equal_the_reference_rfc8785_encoder(value: dict[str, Any]) -> None:
    """Whatever a record holds (floats of any size, astral keys, control characters), its
    bytes are what the reference RFC 8785 encoder makes of it, fast path or not."""
    import rfc8785

    from responder.tlog.records import _Walk

    assert record_text(value) == rfc8785.dumps(_Walk().safe(value)).decode()


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=1, max_value=5000).flatmap(
    lambda size: st.tuples(st.just(size), st.lists(st.integers(0, size - 1), max_size=20))))
def test_paths_from_one_descent_are_each_leafs_inclusion_ranges(
        case: tuple[int, list[int]]) -> None:
    """inclusion_paths() gives every leaf the ranges inclusion_ranges() gives it alone."""
    size, indexes = case
    assert merkle.inclusion_paths(indexes, size) == {
        i: merkle.inclusion_ranges(i, size) for i in indexes}


def test_paths_of_neighbours_and_of_leaves_outside_the_tree() -> None:
    """Leaves side by side get their own paths, and a leaf past the tree, or before it, is
    refused as inclusion_ranges() refuses it."""
    for bad in ([3, 7], [-1, 2]):
        with pytest.raises(ValueError, match="is not in a tree of 7"):
            merkle.inclusion_paths(bad, 7)

    for size in range(1, 70):
        assert merkle.inclusion_paths(range(size), size) == {
            i: merkle.inclusion_ranges(i, size) for i in range(size)}
    for size in (1000, 4097, 30001):  # neighbours near the edge, as a bundle's records are
        near = [*range(size - 20, size), *range(100, 115)]
        assert merkle.inclusion_paths(near, size) == {
            i: merkle.inclusion_ranges(i, size) for i in near}
