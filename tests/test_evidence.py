"""Forensic bundles: sealed per incident, versioned by digest, exported and verified."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from responder.cli import main
from responder.config import SinkSpec
from responder.daemon import Daemon
from responder.evidence.builder import EvidenceBuilder
from responder.evidence.bundle import Seal, build_many
from responder.rules.table import RuleTable
from responder.store.writer import Writer
from tests.conftest import (
    EXCHANGE_TOKEN,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    DaemonFactory,
    dsn_for,
    fixture_bytes,
    idle,
    post_alerts,
    query,
    url,
    wait_for,
)


async def evidence(http: aiohttp.ClientSession, daemon: Daemon, incident: int = 1) -> Any:
    async with http.get(url(daemon, f"/v1/incidents/{incident}/evidence"),
                        headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}) as resp:
        return resp.status, await resp.json()


async def versions(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch("SELECT version, digest, prev_digest, body FROM evidence"
                                     " ORDER BY version"))
    finally:
        await conn.close()


async def contained(make_daemon: DaemonFactory, http: aiohttp.ClientSession,
                    database: str) -> Daemon:
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)

    async def sealed_with_outcomes() -> bool:
        rows = await versions(database)
        return bool(rows) and json.loads(rows[-1]["body"])["controls"] != []

    await wait_for(sealed_with_outcomes, what="evidence sealed")
    return daemon


async def test_bundle_holds_what_was_seen_and_done(make_daemon: DaemonFactory,
                                                   http: aiohttp.ClientSession,
                                                   database: str) -> None:
    """The bundle has the raw alert, the rule and its hash, every call and the levels now."""
    daemon = await contained(make_daemon, http, database)
    status, body = await evidence(http, daemon)
    assert status == 200
    bundle = body["bundle"]
    assert bundle["alerts"][0]["alert"]["fingerprint"] == "512b11d8b5516bb2"
    assert bundle["rule"]["id"] == "ledger-invariant-violation"
    assert daemon.state is not None
    assert bundle["rules_hash_now"] == daemon.state.rules.bundle_hash
    outcomes = [a for a in bundle["actions"] if a["kind"] == "outcome"]
    assert {o["detail"]["call"]["response"]["status"] for o in outcomes} == {200}
    assert {(o["control"], o["detail"]["before"], o["detail"]["after"]) for o in outcomes} == {
        ("withdrawals", "OPEN", "HALTED"), ("symbol-mode", "NORMAL", "CANCEL_ONLY")}
    assert {(c["control"], c["level"], c["verified"]) for c in bundle["controls"]} == {
        ("withdrawals", "HALTED", True), ("symbol-mode", "CANCEL_ONLY", True)}
    rows = await versions(database)
    assert body["digest"] == hashlib.sha256(rows[-1]["body"].encode()).hexdigest()
    assert EXCHANGE_TOKEN not in rows[-1]["body"]


async def test_a_change_seals_a_linked_version(make_daemon: DaemonFactory,
                                               http: aiohttp.ClientSession,
                                               database: str) -> None:
    """A release adds a version that names the digest of the one before; old ones stay."""
    daemon = await contained(make_daemon, http, database)
    before = await versions(database)
    async with http.post(url(daemon, "/v1/controls/symbol-mode/BTC-USD/release"),
                         json={"to_level": "NORMAL", "reason": "reconciled", "ticket": "INC-1"},
                         headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as resp:
        assert resp.status == 200
    await wait_for(lambda: _more_than(database, len(before)), what="a new version")
    after = await versions(database)
    assert after[: len(before)] == before
    assert after[-1]["prev_digest"] == before[-1]["digest"]
    assert any(a["kind"] == "release" for a in json.loads(after[-1]["body"])["actions"])


async def _more_than(dsn: str, n: int) -> bool:
    return len(await versions(dsn)) > n


async def test_sealed_versions_cannot_be_edited(make_daemon: DaemonFactory,
                                                http: aiohttp.ClientSession,
                                                database: str) -> None:
    """UPDATE and DELETE on evidence are refused by the database."""
    await contained(make_daemon, http, database)
    conn = await asyncpg.connect(database)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="sealed"):
            await conn.execute("UPDATE evidence SET body = '{}'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="sealed"):
            await conn.execute("DELETE FROM evidence")
    finally:
        await conn.close()


async def test_export_verifies_and_one_byte_breaks_it(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`evidence export` writes .tar.gz + .sha256; `verify` passes it and fails a tampered one."""
    await contained(make_daemon, http, database)
    monkeypatch.setenv("RESPONDER_DATABASE_URL", database)
    out = tmp_path / "out"
    assert await asyncio.to_thread(main, ["evidence", "export", "1", "--out", str(out)]) == 0
    [archive] = out.glob("*.tar.gz")
    assert (out / f"{archive.name}.sha256").is_file()
    assert main(["evidence", "verify", str(archive)]) == 0
    assert "evidence OK" in capsys.readouterr().out
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    assert main(["evidence", "verify", str(archive)]) == 1
    assert "evidence BROKEN" in capsys.readouterr().err


def several_symbols(n: int) -> bytes:
    """One webhook carrying n firing alerts, each for its own symbol: n incidents."""
    body = json.loads(fixture_bytes("firing-single.json"))
    [alert] = body["alerts"]
    body["alerts"] = [{**alert, "labels": {**alert["labels"], "symbol": f"S{i}-USD"},
                       "fingerprint": f"{i:016x}"} for i in range(n)]
    return json.dumps(body).encode()


async def sealed_rows(dsn: str) -> list[dict[str, Any]]:
    """Every sealed version without its seal-time fields, and the outbox rows it made."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT incident_id, version, content_digest, prev_digest IS NULL"
                                " AS first, actions_seq, body FROM evidence"
                                " ORDER BY incident_id, version")
        keys = await conn.fetch("SELECT incident_id, sink, kind, idempotency_key FROM outbox"
                                " ORDER BY idempotency_key")
        chain = await conn.fetch("SELECT incident_id FROM action_log"
                                 " WHERE kind = 'evidence_sealed' ORDER BY seq")
    finally:
        await conn.close()
    out = []
    for r in rows:
        body = json.loads(r["body"])
        for seal_field in ("sealed_at", "prev_digest", "responder"):
            body.pop(seal_field)
        out.append({**dict(r), "body": body})
    return out + [dict(k) for k in keys] + [{"chain": [c["incident_id"] for c in chain]}]


async def unsealed_incidents(make_daemon: DaemonFactory, http: aiohttp.ClientSession,
                             monkeypatch: pytest.MonkeyPatch,
                             n: int) -> tuple[RuleTable, Sequence[SinkSpec]]:
    """n contained incidents that the daemon (now stopped) never sealed, and its rules and
    sinks: a bundle sink and a paging one."""
    async def no_flush(self: EvidenceBuilder) -> None:
        self._dirty.clear()

    with monkeypatch.context() as patch:
        patch.setattr(EvidenceBuilder, "flush", no_flush)
        daemon = await make_daemon(sinks=[
            {"name": "files", "kind": "file", "dir": "/nonexistent/evidence"},
            {"name": "chat", "kind": "slack", "url": "http://127.0.0.1:9/", "bundles": False,
             "pages": True}])
        await post_alerts(http, daemon, several_symbols(n))
        await idle(daemon)
        assert daemon.state is not None
        table, sinks = daemon.state.rules, daemon.settings.evidence.sinks
        await daemon.shutdown()
    return table, sinks


async def incident_ids(dsn: str) -> list[int]:
    return [r["id"] for r in await query(dsn, "SELECT id FROM incidents ORDER BY id")]


@contextlib.asynccontextmanager
async def own_writer(dsn: str, table: RuleTable) -> AsyncIterator[tuple[asyncpg.Pool, Writer]]:
    """A pool and a running writer of the test's own on the store."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    writer = Writer(pool, lambda: table.bundle_hash)
    task = asyncio.create_task(writer.run())
    try:
        yield pool, writer
    finally:
        writer.stop()
        await task
        await pool.close()


async def seal_with(dsn: str, table: RuleTable, sinks: Sequence[SinkSpec],
                    batches: Sequence[Sequence[int]]) -> int:
    """Seal with a builder of the test's own, one flush per batch; the writer's commits."""
    async with own_writer(dsn, table) as (pool, writer):
        builder = EvidenceBuilder(pool, writer, lambda: table, sinks=sinks, link="http://x")
        for batch in batches:
            builder.touch(list(batch))
            await builder.flush()
    return writer.batches


async def test_a_batch_seals_what_one_at_a_time_seals(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sealing several incidents in one flush makes, in one commit, the same versions, chain
    entries and deliveries as sealing them one at a time; then, unchanged, none again."""
    table, sinks = await unsealed_incidents(make_daemon, http, monkeypatch, 6)
    name = database.rpartition("/")[2]
    copy = f"{name}_copy"  # an exact copy, so that both ways start from the same store
    admin = await asyncpg.connect(dsn_for("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
        ids = await incident_ids(database)
        assert len(ids) == 6
        assert await seal_with(database, table, sinks, [ids]) == 1
        assert await seal_with(dsn_for(copy), table, sinks, [[i] for i in ids]) == len(ids)
        batched = await sealed_rows(database)
        assert batched == await sealed_rows(dsn_for(copy))
        assert [r["incident_id"] for r in batched if "version" in r] == ids
        # (checkpoints are the daemon's, signed after its SEV1 containments)
        assert {r["kind"] for r in batched if "kind" in r} - {"checkpoint"} == {"bundle", "page"}
        assert batched[-1] == {"chain": ids}
        await seal_with(database, table, sinks, [ids])
        assert await sealed_rows(database) == batched
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
        await admin.close()


async def test_one_content_sealed_twice_in_a_batch_is_one_version(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two seals of the same content merged into one commit (a unit left queued by a
    cancelled flush, then sealed again) make one version each, and one sealed hook each."""
    table, sinks = await unsealed_incidents(make_daemon, http, monkeypatch, 3)
    ids = await incident_ids(database)
    hooks: list[int] = []
    async with own_writer(database, table) as (pool, writer):
        async with pool.acquire() as conn:
            contents = await build_many(conn, ids, table)
        seals = [Seal(i, contents[i], sinks, sealed=lambda: hooks.append(1)) for i in ids]
        results = await asyncio.gather(*(writer.submit(s) for s in seals + seals))
    assert writer.batches == 1
    assert [r and r["version"] for r in results] == [1, 1, 1, None, None, None]
    assert len(hooks) == 3
    rows = await sealed_rows(database)
    assert [(r["incident_id"], r["version"]) for r in rows if "version" in r] == [
        (i, 1) for i in ids]
    assert rows[-1] == {"chain": ids}


async def test_a_seal_read_before_the_current_version_is_dropped(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two replicas seal one incident from the same action records but read where its
    controls stand at different moments. Whichever commits last, the version read later
    stays the current one."""
    table, sinks = await unsealed_incidents(make_daemon, http, monkeypatch, 1)
    [incident] = await incident_ids(database)
    async with own_writer(database, table) as (pool, writer):
        async with pool.acquire() as conn:
            content = (await build_many(conn, [incident], table))[incident]
        earlier = {**content, "controls": [{**c, "level": "NORMAL"} for c in content["controls"]]}
        assert earlier != content
        t0 = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
        later = await writer.submit(Seal(incident, content, sinks,
                                         built_at=t0 + timedelta(seconds=2)))
        stale = await writer.submit(Seal(incident, earlier, sinks, built_at=t0))
        newer = await writer.submit(Seal(incident, earlier, sinks,
                                         built_at=t0 + timedelta(seconds=3)))
    assert later is not None and later["version"] == 1
    assert stale is None
    assert newer is not None and newer["version"] == 2
