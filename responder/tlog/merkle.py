"""RFC 9162 Merkle tree arithmetic: hashes, proof shapes and proof verification.

A node is named by ``(level, index)``: it covers leaves ``[index * 2**level,
(index + 1) * 2**level)``. Only complete subtrees have names; the hash of any other range
that a proof needs is folded from the complete subtrees it splits into, so storing every
complete subtree once is enough to answer any proof with O(log n) lookups.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

NodeKey = tuple[int, int]
Range = tuple[int, int]
HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1), where RFC 9162 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def range_keys(start: int, end: int) -> list[NodeKey]:
    """The complete subtrees that make up leaves [start, end), left to right."""
    return list(_range_keys(start, end))


@functools.lru_cache(maxsize=4_096)
def _range_keys(start: int, end: int) -> tuple[NodeKey, ...]:
    """range_keys, remembered: the proofs of neighbouring leaves in one tree share most of
    their ranges, and bundles sealed together ask for the same ones again."""
    keys: list[NodeKey] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while start + (1 << level) > end:
            level -= 1
        keys.append((level, start >> level))
        start += 1 << level
    return tuple(keys)


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of a range from its complete subtrees (range_keys order).

    Valid for the ranges RFC 9162 builds trees from, where the subtrees shrink to the right.
    """
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose hashes form PATH(index, D[size]), deepest first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    out: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = 1 << ((end - start - 1).bit_length() - 1)  # _split(end - start), inline
        if index < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def inclusion_paths(indexes: Iterable[int], size: int) -> dict[int, list[Range]]:
    """inclusion_ranges() of each index, from one descent of the tree: the paths of leaves
    near each other share their top, which is walked once for all of them."""
    todo = sorted(set(indexes))
    if todo and (todo[0] < 0 or todo[-1] >= size):
        bad = todo[0] if todo[0] < 0 else todo[-1]
        raise ValueError(f"leaf {bad} is not in a tree of {size}")
    out: dict[int, list[Range]] = {}
    stack: list[tuple[int, int, list[int], list[Range]]] = [(0, size, todo, [])] if todo else []
    while stack:
        start, end, here, path = stack.pop()
        while end - start > 1:
            mid = start + (1 << ((end - start - 1).bit_length() - 1))  # _split, inline
            left = bisect.bisect_left(here, mid)
            if left == len(here):
                path.append((mid, end))
                end = mid
            elif left == 0:
                path.append((start, mid))
                start = mid
            else:  # the paths part here: the right ones go on from a copy
                stack.append((mid, end, here[left:], [*path, (start, mid)]))
                here = here[:left]
                path.append((mid, end))
                end = mid
        path.reverse()
        out[start] = path
    return out


def consistency_ranges(old: int, new: int) -> list[Range]:
    """The leaf ranges whose hashes form PROOF(old, D[new]) (RFC 9162 2.1.4.1)."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    out: list[Range] = []
    start, end, m, complete = 0, new, old, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        out.append((start, end))
    out.reverse()
    return out


def range_hash(start: int, end: int, lookup: Callable[[NodeKey], bytes]) -> bytes:
    """The hash of leaves [start, end), folded from stored complete subtrees."""
    return fold([lookup(k) for k in _range_keys(start, end)])


def proof_from(ranges: Sequence[Range], lookup: Callable[[NodeKey], bytes]) -> list[bytes]:
    """Proof hashes for ``ranges``, each folded from stored complete subtrees."""
    return [range_hash(a, b, lookup) for a, b in ranges]


def keys_for(ranges: Iterable[Range]) -> set[NodeKey]:
    return {k for a, b in ranges for k in _range_keys(a, b)}


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The root that ``proof`` implies for ``leaf`` at ``index`` (RFC 9162 2.1.3.2), or None
    when the proof cannot be one for that index and size."""
    if not 0 <= index < size or len(leaf) != HASH_BYTES:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0 or len(p) != HASH_BYTES:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     root: bytes) -> bool:
    return root_from_inclusion(index, size, leaf, proof) == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2. Equal sizes need an empty proof and equal roots; a proof from the
    empty tree proves nothing and is refused (callers treat size 0 on its own)."""
    if old == 0:
        return False
    if old == new:
        return not proof and old_root == new_root
    if not 0 < old < new or not proof or any(len(p) != HASH_BYTES for p in proof):
        return False
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


@dataclass
class Frontier:
    """The right edge of a tree: the complete subtrees covering [0, size), largest first.

    Appending a leaf merges equal-sized subtrees, which names each new complete subtree once;
    that is all an append must store, O(log n) in the worst case and two nodes on average.
    """

    size: int = 0
    nodes: list[tuple[NodeKey, bytes]] = field(default_factory=list)

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.nodes))

    def append(self, leaf: bytes) -> list[tuple[NodeKey, bytes]]:
        made: list[tuple[NodeKey, bytes]] = [((0, self.size), leaf)]
        self.nodes.append(made[0])
        self.size += 1
        while len(self.nodes) > 1 and self.nodes[-1][0][0] == self.nodes[-2][0][0]:
            (level, index), right = self.nodes.pop()
            _, left = self.nodes.pop()
            merged = ((level + 1, index >> 1), node_hash(left, right))
            self.nodes.append(merged)
            made.append(merged)
        return made

    def root(self) -> bytes:
        return fold([h for _, h in self.nodes])
