"""What sealing a bundle costs in the writer: its content is walked once for both of its
texts, and the bytes and proofs are those the slower way made."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.audit import bundle_proofs
from responder.evidence.bundle import Seal, build_many, record_values
from responder.evidence.verify_offline import verify_bundle
from responder.store import actionlog, tree
from responder.store.actionlog import Head
from responder.store.writer import Writer
from responder.tlog import merkle
from responder.tlog import records as records_module
from responder.tlog.merkle import Frontier, NodeKey, leaf_hash
from responder.tlog.note import Notary, Signer
from responder.tlog.records import record_text
from tests.conftest import DaemonFactory
from tests.test_evidence import incident_ids, unsealed_incidents


def _items(value: Any) -> int:
    """How many values a walk of ``value`` visits."""
    if isinstance(value, dict):
        return 1 + sum(_items(v) for v in value.values())
    if isinstance(value, list | tuple):
        return 1 + sum(_items(v) for v in value)
    return 1


async def test_a_seal_walks_its_content_once_for_the_same_bytes(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sealing checks the content for the fast encoder once, not once per text, and the body
    it stores is the standard library's canonical bytes of the bundle, whose proofs check."""
    table, sinks = await unsealed_incidents(make_daemon, http, monkeypatch, 2)
    ids = await incident_ids(database)
    notary = Notary(Signer.generate("test/log"), "test/log")
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    writer = Writer(pool, lambda: table.bundle_hash, notary=notary)
    walked: list[int] = []
    real = records_module.plain

    def counting(value: Any, bound: int, **kwargs: Any) -> bool:
        walked.append(_items(value))
        return real(value, bound, **kwargs)

    try:
        async with pool.acquire() as conn:
            contents = await build_many(conn, ids, table)
        task = asyncio.create_task(writer.run())
        with monkeypatch.context() as patch:
            patch.setattr(actionlog, "plain", counting)
            sealed = await writer.submit(Seal(ids[0], contents[ids[0]], sinks))
        writer.stop()
        await task
        assert sealed is not None
        body = await pool.fetchval("SELECT body FROM evidence WHERE incident_id = $1", ids[0])
    finally:
        await pool.close()
    bundle = json.loads(body)
    content = _items(contents[ids[0]])
    # The content once, and the few fields the bundle adds (its proofs among them).
    assert content < sum(walked) < content + _items(bundle["audit"]) + 20
    assert body == json.dumps(bundle, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False)
    assert verify_bundle(bundle, notary.verifier).records == len(bundle["actions"])


class _Chain:
    """What attach() asks of the writer's appender: the tree as committed, its nodes, the
    transaction's memo (its checkpoint already signed) and the writer's cache, if any."""

    def __init__(self, frontier: Frontier, nodes: dict[NodeKey, bytes],
                 cache: tree.NodeCache | None) -> None:
        self.notary = object()
        self.committed = Head(frontier.size, "", frontier)
        self.memo: dict[str, Any] = {"checkpoint": "a note"}
        self.cache = cache
        self._nodes = nodes

    async def nodes(self, keys: Any) -> dict[NodeKey, bytes]:
        return {k: self._nodes[k] for k in keys}


class _Bodies:
    def __init__(self, bodies: dict[int, str]) -> None:
        self.bodies = bodies

    async def fetch(self, query: str, seqs: list[int]) -> list[dict[str, Any]]:
        return [{"seq": s, "body": self.bodies[s]} for s in seqs]


@pytest.mark.parametrize("with_cache", [False, True])
async def test_proof_hashes_and_record_checks_are_done_once(
        monkeypatch: pytest.MonkeyPatch, with_cache: bool) -> None:
    """Bundles get each record's RFC 9162 inclusion proof, and the legacy record its stored
    bytes, while a range of leaves that several proofs share is folded from its subtrees
    once per transaction, and with the writer's cache once in all, as is each record
    checked against its leaf."""
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
    folds = texts = 0
    real_fold, real_text = merkle.fold, records_module.record_text

    def folding(hashes: Any) -> bytes:
        nonlocal folds
        folds += 1
        return real_fold(hashes)

    def writing(record: Any) -> str:
        nonlocal texts
        texts += 1
        return real_text(record)

    monkeypatch.setattr(merkle, "fold", folding)
    monkeypatch.setattr(bundle_proofs, "record_text", writing)
    cache = tree.NodeCache() if with_cache else None
    transactions = [[range(280, 292), range(1, 4)], [range(286, 298), range(280, 292)]]
    sealed: list[tuple[range, dict[str, Any]]] = []
    wanted_folds = 0
    for groups in transactions:
        chain = _Chain(frontier, nodes, cache)
        for group in groups:
            bundle: dict[str, Any] = {"actions": [{**records[s], "hash": f"h{s}"}
                                                  for s in group]}
            await bundle_proofs.attach(_Bodies(bodies), chain, bundle, ())  # type: ignore[arg-type]
            sealed.append((group, bundle))
        wanted_folds += len({r for g in groups for s in g
                             for r in merkle.inclusion_ranges(s - 1, 300)})
    monkeypatch.undo()
    everything = [s for groups in transactions for g in groups for s in g]
    if with_cache:
        assert folds == len({r for s in everything for r in merkle.inclusion_ranges(s - 1, 300)})
        assert texts == len(set(everything)) + everything.count(290) - 1  # 290 each time
    else:
        assert folds == wanted_folds
        assert texts == len(everything)
    for group, bundle in sealed:
        assert bundle["audit"]["tree_size"] == 300
        for seq, entry in zip(group, bundle["audit"]["records"], strict=True):
            proof = merkle.proof_from(merkle.inclusion_ranges(seq - 1, 300), nodes.__getitem__)
            assert entry == {"seq": seq, "tree_size": 300,
                             "proof": [base64.b64encode(p).decode() for p in proof],
                             **({"record": bodies[seq]} if seq == 290 else {})}
            assert merkle.verify_inclusion(seq - 1, 300, leaf_hash(bodies[seq].encode()),
                                           proof, frontier.root())


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (NaN equal to NaN, -0.0 not to 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70) | st.floats()
    | st.text(), lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=20)


@settings(max_examples=1500, deadline=None)
@given(json_values, st.sampled_from(["orjson", "compact", "spaced", "ascii"]))
def test_record_texts_read_as_the_standard_library_reads_them(value: Any, how: str) -> None:
    """A record's text reads to the very values json.loads() gives, the faster way or not:
    big integers, floats, NaN, lone surrogates and signed zeros included."""
    try:
        text = {"orjson": lambda: orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode(),
                "compact": lambda: json.dumps(value, separators=(",", ":"), sort_keys=True,
                                              ensure_ascii=False),
                "spaced": lambda: json.dumps(value),
                "ascii": lambda: json.dumps(value, sort_keys=True)}[how]()
    except (orjson.JSONEncodeError, UnicodeEncodeError):
        return  # not a text anything could have stored
    assert _same(record_values(text), json.loads(text))


def test_record_texts_that_orjson_reads_otherwise_take_the_standard_path() -> None:
    """Texts orjson would read to other values, or refuse, read as json.loads reads them."""
    for text in ['{"i":123456789012345678901234}', '{"i":-9223372036854775809}',
                 '{"a":1,"a":2}', '{"f":1e400}', '[NaN]', '["\\ud800"]', '{"f":1E5}',
                 '{"f":0.10000000000000000555}', '{"b":1,"a":2}', "[" * 300 + "]" * 300]:
        assert _same(record_values(text), json.loads(text)), text


async def test_bundles_are_stored_with_lz4_where_the_server_has_it(pool: asyncpg.Pool) -> None:
    # Compressing a bundle is part of every seal's transaction: lz4 does it in under half
    # pglz's time. A server built without lz4 keeps pglz, and its migration still applies.
    async with pool.acquire() as conn:
        try:
            await conn.execute("CREATE TEMP TABLE lz4_probe (b text COMPRESSION lz4)")
        except asyncpg.FeatureNotSupportedError:
            expected = ""
        else:
            expected = "l"
        methods = await conn.fetch(
            "SELECT c.relname, a.attcompression::text AS method FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE (c.relname, a.attname) IN (('evidence', 'body'), ('outbox', 'payload'))")
        assert {r["relname"]: r["method"] for r in methods} == {"evidence": expected,
                                                               "outbox": expected}
        body = json.dumps({"actions": [{"hash": "ab" * 32, "seq": n} for n in range(400)]})
        stored = await conn.fetchval(
            "WITH i AS (INSERT INTO incidents (rule_id, scope, severity, status, rules_hash)"
            " VALUES ('r', 's', 'sev1', 'open', 'h') RETURNING id)"
            " INSERT INTO evidence (incident_id, version, digest, content_digest, body)"
            " SELECT id, 1, 'd', 'c', $1 FROM i RETURNING body", body)
        assert stored == body
