"""The Merkle action log against its own database's superuser: rewrites that keep every
stored hash consistent are still caught by a checkpoint a sink received before."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from responder.audit.checkpoints import sign_latest
from responder.audit.keys import GENERATED_PUB
from responder.audit.note_files import read_notes
from responder.audit.verify import check_checkpoint, verify_tree
from responder.cli import main
from responder.daemon import Daemon
from responder.errors import AuditChainError, CheckpointInvalid
from responder.store.actionlog import GENESIS, Entry, chain_hash
from responder.store.writer import Writer
from responder.tlog import merkle
from responder.tlog.note import Checkpoint, Signer, open_checkpoint
from responder.tlog.records import record_text
from tests.conftest import ROOT, DaemonFactory, fixture_bytes, idle, post_alerts, query, wait_for


async def _cli(argv: list[str]) -> int:
    return await asyncio.to_thread(main, argv)


async def _witnessed(make_daemon: DaemonFactory, http: aiohttp.ClientSession,
                     tmp_path: Path) -> tuple[Daemon, Path]:
    """A daemon that contained a SEV1 and more, whose last checkpoint covers every record
    and reached the file sink (the witness); the daemon is stopped afterwards."""
    witness = tmp_path / "witness"
    daemon = await make_daemon(sinks=[{"name": "files", "kind": "file", "dir": str(witness)}])
    assert daemon.state is not None
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await post_alerts(http, daemon, fixture_bytes("firing-group-truncated.json"))
    await idle(daemon)
    pool = daemon.state.pool

    async def sealed() -> bool:
        async with pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT count(*) FROM evidence"))

    await wait_for(sealed, what="a sealed bundle")
    await daemon.shutdown()
    # A delivery claimed as the daemon stopped waits out its lease; end the lease now.
    await query(daemon.settings.database_url.get_secret_value(),  # type: ignore[union-attr]
                "UPDATE outbox SET next_attempt_at = now() WHERE status = 'pending'")
    # Nothing appends now: sign the whole log and let a fresh outbox deliver it.
    again = await make_daemon(sinks=[{"name": "files", "kind": "file", "dir": str(witness)}],
                              checkpoint_interval_s=0)
    assert again.state is not None and again.checkpointer is not None
    made = await again.checkpointer.sign("test")
    assert made is not None
    final = witness / f"checkpoint-{made[0].size}-files.json"
    await wait_for(final.is_file, what="the final checkpoint at the witness")
    await wait_for(lambda: _delivered(again.state.pool),  # type: ignore[union-attr]
                   what="every delivery at the witness")
    await again.shutdown()
    return again, witness


async def _append(database: str, *entries: Entry) -> None:
    from responder.store.db import create_pool

    pool = await create_pool(database, max_size=2)
    writer = Writer(pool, lambda: "rules")
    task = asyncio.create_task(writer.run())

    async def unit(conn: Any, chain: Any) -> None:
        chain.add(*entries)

    try:
        await writer.submit(unit)
    finally:
        writer.stop()
        await task
        await pool.close()


async def _delivered(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as conn:
        return not await conn.fetchval("SELECT count(*) FROM outbox WHERE status <> 'delivered'")


async def _rewrite(database: str, change: Callable[[list[dict[str, Any]]],
                                                   list[dict[str, Any]]]) -> None:
    """The attacker: superuser, triggers off, rewrites the records as ``change`` says, then
    recomputes every chain hash and tree node from the data so the store agrees with itself."""
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("SET session_replication_role = replica")
        rows = await conn.fetch("SELECT * FROM action_log ORDER BY seq")
        records = change([json.loads(r["body"]) for r in rows])
        columns = {r["seq"]: dict(r) for r in rows}
        async with conn.transaction():
            await conn.execute("DELETE FROM action_log")
            await conn.execute("DELETE FROM merkle_nodes")
            await conn.execute("DELETE FROM checkpoints")
            prev, frontier, nodes = GENESIS, merkle.Frontier(), []
            for seq, record in enumerate(records, start=1):
                old = columns[record["seq"]]
                record["seq"] = seq
                body = record_text(record)
                digest = chain_hash(prev, body)
                await conn.execute(
                    "INSERT INTO action_log (seq, at, kind, incident_id, rule_id, control, key,"
                    " step_id, body, prev_hash, hash, correlation_id)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    seq, old["at"], record["kind"], record["incident_id"], record["rule_id"],
                    record["control"], record["key"], record["step_id"], body, prev, digest,
                    record["correlation_id"])
                nodes += frontier.append(merkle.leaf_hash(body.encode()))
                prev = digest
            await conn.executemany("INSERT INTO merkle_nodes (level, idx, hash)"
                                   " VALUES ($1, $2, $3)", [(k[0], k[1], h) for k, h in nodes])
    finally:
        await conn.close()


def _edit_one(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    records[3]["detail"] = {**records[3]["detail"], "note": "nothing happened here"}
    return records


@pytest.mark.parametrize(("attack", "change"), [
    ("delete the last 3 records", lambda rs: rs[:-3]),
    ("delete a middle record and renumber", lambda rs: rs[:4] + rs[5:]),
    ("edit one record", _edit_one),
])
async def test_superuser_rewrites_are_caught_by_a_witnessed_checkpoint(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], attack: str,
    change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
) -> None:
    """After a rewrite with every hash and node recomputed, the store agrees with itself,
    but `audit verify --checkpoint` fails naming the first witnessed checkpoint it breaks."""
    _, witness = await _witnessed(make_daemon, http, tmp_path)
    monkeypatch.setenv("RESPONDER_DATABASE_URL", database)
    monkeypatch.setenv("RESPONDER_DATA_DIR", str(tmp_path / "data"))
    assert await _cli(["audit", "verify", "--checkpoint", str(witness)]) == 0
    out = capsys.readouterr().out
    assert out.count(": holds") >= 2, out  # the SEV1 checkpoint and the final one
    total = len(await query(database, "SELECT seq FROM action_log"))
    await _rewrite(database, change)
    assert await _cli(["audit", "verify"]) == 0, attack  # no secret needed to agree with itself
    capsys.readouterr()
    assert await _cli(["audit", "verify", "--checkpoint", str(witness)]) == 1
    err = capsys.readouterr().err
    assert "no longer holds" in err, err
    sizes = {label: Checkpoint.parse_body(note.partition("\n\n")[0] + "\n").size
             for label, note in read_notes(witness)}
    named = next(label for label in sizes if f"checkpoint {label} no longer" in err)
    # The smallest witnessed checkpoint covering the first changed record is the one named.
    first_changed = {"delete the last 3 records": total - 2,
                     "delete a middle record and renumber": 5, "edit one record": 4}[attack]
    assert sizes[named] == min(v for v in sizes.values() if v >= first_changed)


async def test_an_edit_without_recomputing_names_the_record(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, tmp_path: Path,
) -> None:
    """A record edited in place (chain re-hashed, tree not) is named by the tree check."""
    await _witnessed(make_daemon, http, tmp_path)
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("UPDATE action_log SET body = replace(body, '\"kind\"', '\"kind\" ')"
                           " WHERE seq = 5")
        with pytest.raises(AuditChainError, match="record 5: its tree leaf"):
            await verify_tree(conn)
        await conn.execute("UPDATE merkle_nodes SET hash = $1 WHERE level = 1 AND idx = 0",
                           b"\x00" * 32)
        with pytest.raises(AuditChainError):
            await verify_tree(conn)
    finally:
        await conn.close()


async def test_forged_or_missing_signatures_are_refused(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """A checkpoint whose signed text was changed, or that carries no or a foreign signature,
    is refused by `audit verify`, naming its file."""
    _, witness = await _witnessed(make_daemon, http, tmp_path)
    monkeypatch.setenv("RESPONDER_DATABASE_URL", database)
    monkeypatch.setenv("RESPONDER_DATA_DIR", str(tmp_path / "data"))
    note = json.loads(sorted(witness.glob("checkpoint-*.json"))[0].read_text())["note"]
    body = note.partition("\n\n")[0] + "\n"
    lines = body.split("\n")
    cases = {
        "forged.note": note.replace(lines[2], base64.b64encode(b"\x01" * 32).decode()),
        "unsigned.note": body + "\n",
        "foreign.note": Signer.generate(lines[0]).sign(body),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert await _cli(["audit", "verify", "--checkpoint", str(tmp_path / name)]) == 1, name
        err = capsys.readouterr().err
        assert name in err and ("invalid" in err or "missing" in err or "no signature" in err)


async def test_bundle_verifies_offline_and_refuses_tampering(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """An exported bundle verifies with only the public key (no store: its URL is bogus);
    a bundle whose proofs name another tree size, or whose record was edited, is refused."""
    _, witness = await _witnessed(make_daemon, http, tmp_path)
    monkeypatch.setenv("RESPONDER_DATABASE_URL", database)
    monkeypatch.setenv("RESPONDER_DATA_DIR", str(tmp_path / "data"))
    assert await _cli(["evidence", "export", "1", "--out", str(tmp_path / "out")]) == 0
    [archive] = (tmp_path / "out").glob("*.tar.gz")
    pub = tmp_path / "auditor.pub"
    shutil.copy(tmp_path / "data" / GENERATED_PUB, pub)
    monkeypatch.setenv("RESPONDER_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    capsys.readouterr()
    assert await _cli(["audit", "verify-bundle", str(archive), "--public-key", str(pub)]) == 0
    assert "bundle OK: incident 1" in capsys.readouterr().out
    delivered = json.loads(sorted(witness.glob("bundle-1-*.json"))[-1].read_text())
    bundle = delivered["bundle"]
    assert bundle["audit"]["records"] and "hash" in bundle["actions"][0]
    bad: dict[str, dict[str, Any]] = {}
    other = json.loads(json.dumps(bundle))
    other["audit"]["tree_size"] += 1
    bad["size"] = other
    other = json.loads(json.dumps(bundle))
    other["audit"]["records"][0]["tree_size"] = 1
    bad["record-size"] = other
    other = json.loads(json.dumps(bundle))
    other["actions"][1]["detail"]["extra"] = 1
    bad["edited"] = other
    other = json.loads(json.dumps(bundle))
    other["audit"]["records"].pop()
    bad["unproved"] = other
    for name, tampered in bad.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(tampered))
        assert await _cli(["audit", "verify-bundle", str(path), "--public-key", str(pub)]) == 1
        assert "bundle REFUSED" in capsys.readouterr().err, name


async def test_prove_prints_a_proof_that_checks_against_the_checkpoint(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`audit prove SEQ --checkpoint FILE` prints the record and a proof that, checked by
    hand with the RFC's algorithm, leads to the checkpoint's root."""
    _, witness = await _witnessed(make_daemon, http, tmp_path)
    monkeypatch.setenv("RESPONDER_DATABASE_URL", database)
    monkeypatch.setenv("RESPONDER_DATA_DIR", str(tmp_path / "data"))
    final = max(witness.glob("checkpoint-*.json"), key=lambda p: int(p.name.split("-")[1]))
    capsys.readouterr()
    assert await _cli(["audit", "prove", "3", "--checkpoint", str(final)]) == 0
    printed = json.loads(capsys.readouterr().out)
    root = base64.b64decode(printed["checkpoint"].split("\n")[2])
    assert merkle.verify_inclusion(2, printed["tree_size"],
                                   merkle.leaf_hash(printed["record"].encode()),
                                   [base64.b64decode(p) for p in printed["proof"]], root)
    assert await _cli(["audit", "checkpoint"]) == 0
    assert capsys.readouterr().out == json.loads(final.read_text())["note"]
    # What it prints is the note and nothing else (no log line), so it can be kept as it is.
    await _append(database, Entry("test"))
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "responder", "audit", "checkpoint", "--new"],
        capture_output=True, check=True, env={**os.environ}, cwd=ROOT)
    (tmp_path / "kept.note").write_bytes(done.stdout)
    assert await _cli(["audit", "verify", "--checkpoint", str(tmp_path / "kept.note")]) == 0


async def test_two_writers_appending_at_once_make_one_tree(database: str,
                                                           tmp_path: Path) -> None:
    """Two replicas' writers appending at once, each signing checkpoints as it goes, leave
    one tree that matches its records, and every checkpoint is consistent with it."""
    from responder.store.db import create_pool, migrate
    from responder.tlog.note import Notary

    notary = Notary(Signer.generate("test/log"), "test/log")
    pools = [await create_pool(database, max_size=3) for _ in range(2)]
    await migrate(pools[0])
    writers = [Writer(p, lambda: "rules", notary=notary) for p in pools]
    tasks = [asyncio.create_task(w.run()) for w in writers]

    def unit(i: int) -> Any:
        async def append(conn: Any, chain: Any) -> None:
            chain.add(*[Entry("test", detail={"i": i, "n": n}) for n in range(i % 3 + 1)])
        return append

    async def replica(writer: Writer, pool: asyncpg.Pool, offset: int) -> None:
        for round_ in range(8):
            await asyncio.gather(*(writer.submit(unit(offset + round_ * 10 + i))
                                   for i in range(10)))
            async with pool.acquire() as conn:
                await sign_latest(conn, notary, "test")

    try:
        await asyncio.gather(replica(writers[0], pools[0], 0), replica(writers[1], pools[1], 1000))
    finally:
        for w in writers:
            w.stop()
        await asyncio.gather(*tasks)
    try:
        async with pools[0].acquire() as conn:
            report = await verify_tree(conn)
            assert report.size == await conn.fetchval("SELECT count(*) FROM action_log")
            notes = [r["note"] for r in await conn.fetch("SELECT note FROM checkpoints")]
            assert len(notes) >= 8
            for note in notes:
                await check_checkpoint(conn, report, "stored", note, notary.verifier,
                                       "test/log")
            with pytest.raises(CheckpointInvalid):
                await check_checkpoint(conn, report, "foreign", Signer.generate(
                    "test/log").sign(open_checkpoint(notes[0], notary.verifier).body()),
                    notary.verifier, "test/log")
    finally:
        for p in pools:
            await p.close()
    rows = await query(database, "SELECT count(*) AS n FROM merkle_nodes WHERE level = 0")
    assert rows[0]["n"] == report.size


async def test_records_from_before_the_tree_become_its_leaves(database: str) -> None:
    """The migration's SQL backfill and the writer's catch-up each build the tree that
    Python builds from records that were written without one."""
    from responder.store.db import create_pool, migrate

    pool = await create_pool(database, max_size=2)
    try:
        await migrate(pool)
    finally:
        await pool.close()
    await _append(database, *[Entry("test", detail={"i": i}) for i in range(11)])
    sql = (ROOT / "responder/store/migrations/020_merkle_tree.sql").read_text()
    backfill = sql[sql.index("INSERT INTO merkle_nodes"):sql.index("CREATE FUNCTION")]
    conn = await asyncpg.connect(database)
    try:
        expected = (await verify_tree(conn)).root
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("DELETE FROM merkle_nodes")
        await conn.execute(backfill)
        assert (await verify_tree(conn)).root == expected
        await conn.execute("DELETE FROM merkle_nodes WHERE (level = 0 AND idx >= 5)"
                           " OR (level = 1 AND idx >= 2) OR (level >= 2 AND idx >= 1)"
                           " OR level >= 3")
    finally:
        await conn.close()
    await _append(database, Entry("test", detail={"after": True}))
    conn = await asyncpg.connect(database)
    try:
        report = await verify_tree(conn)
        assert report.size == 12
    finally:
        await conn.close()


async def test_production_needs_a_configured_key(tmp_path: Path) -> None:
    """RESPONDER_ENV=production refuses to start without a signing key file; elsewhere a
    key is made once under the data directory and kept across starts."""
    from responder.audit.keys import load_notary, write_key
    from responder.config import load_settings
    from responder.errors import ConfigError

    with pytest.raises(ConfigError, match="RESPONDER_AUDIT_SIGNING_KEY_FILE"):
        load_notary(load_settings(None, env="production", data_dir=tmp_path))
    first = load_notary(load_settings(None, data_dir=tmp_path / "dev"))
    assert str(load_notary(load_settings(None, data_dir=tmp_path / "dev")).verifier) == str(
        first.verifier)
    key, _ = write_key(Signer.generate("prod/log"), tmp_path / "prod")
    configured = load_notary(load_settings(None, env="production", data_dir=tmp_path,
                                           audit_signing_key_file=key, audit_origin="prod/log"))
    assert configured.signer.name == "prod/log"


def _load_key_at_once(data_dir: str, barrier: Any, out: Any) -> None:
    from responder.audit.keys import load_notary
    from responder.config import load_settings

    settings = load_settings(None, data_dir=Path(data_dir))
    barrier.wait()
    try:
        out.put(str(load_notary(settings).verifier))
    except Exception as e:  # the parent reports what the child met
        out.put(f"error: {type(e).__name__}: {e}")


def test_replicas_sharing_a_data_dir_start_at_once_with_one_key(tmp_path: Path) -> None:
    """Two replicas on one data directory both find no key at their first start: one makes
    it, the other uses it, and neither fails or reads a half-written file."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for attempt in range(6):
        data_dir = tmp_path / f"data-{attempt}"
        barrier, out = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_load_key_at_once, args=(str(data_dir), barrier, out))
                 for _ in range(6)]
        for proc in procs:
            proc.start()
        seen = [out.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert len(set(seen)) == 1, seen
        assert not seen[0].startswith("error")
        assert sorted(p.name for p in data_dir.iterdir()) == [
            "audit-signing.key", "audit-signing.pub"]


async def test_sev1_containment_signs_a_checkpoint_for_the_sinks(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, tmp_path: Path,
) -> None:
    """After a SEV1 is contained, a checkpoint covering its outcome is signed, stored and
    delivered to the sink, with no interval checkpoint running."""
    witness = tmp_path / "witness"
    daemon = await make_daemon(sinks=[{"name": "files", "kind": "file", "dir": str(witness)}],
                               checkpoint_interval_s=0)
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)

    applied = await query(database, "SELECT max(seq) AS seq FROM action_log WHERE kind ="
                                     " 'outcome'")

    async def covered() -> bool:
        # A bundle's seal may have stored that size first, under its own reason.
        rows = await query(database, "SELECT tree_size FROM checkpoints WHERE tree_size >= $1",
                           applied[0]["seq"])
        return bool(rows)

    await wait_for(covered, what="a checkpoint covering the SEV1's outcome")
    [row, *_] = await query(database, "SELECT tree_size FROM checkpoints WHERE tree_size >= $1"
                                      " ORDER BY tree_size", applied[0]["seq"])
    path = witness / f"checkpoint-{row['tree_size']}-files.json"
    await wait_for(path.is_file, what="the checkpoint at the sink")


async def test_a_bundles_checkpoint_reaches_the_sinks(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The checkpoint a sealed bundle signs is witnessed like the others. When a bundle is
    sealed first, its checkpoint is the one that covers the SEV1's outcome and none is
    signed after the containment (here: the SEV1 checkpointer does nothing), so the sink
    must have it."""
    from responder.audit.checkpoints import Checkpointer

    async def idle_forever(self: Checkpointer, debounce_s: float = 0.2) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(Checkpointer, "after_containment", idle_forever)
    witness = tmp_path / "witness"
    daemon = await make_daemon(sinks=[{"name": "files", "kind": "file", "dir": str(witness)}],
                               checkpoint_interval_s=0)
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)

    async def sealed() -> list[Any]:
        return await query(database, "SELECT tree_size FROM checkpoints WHERE reason ="
                                     " 'bundle'")

    async def any_sealed() -> bool:
        return bool(await sealed())

    await wait_for(any_sealed, what="a bundle's checkpoint")
    [row] = await sealed()
    path = witness / f"checkpoint-{row['tree_size']}-files.json"
    await wait_for(path.is_file, what="the bundle's checkpoint at the sink")


async def test_production_daemon_stops_before_the_store_without_a_key(
    database: str, rules_dir: Path, tmp_path: Path,
) -> None:
    """A production daemon without a signing key refuses to start, naming the setting,
    before it touches the store."""
    from prometheus_client import CollectorRegistry

    from responder.errors import ConfigError
    from tests.conftest import settings_for

    daemon = Daemon(settings_for(database, rules_dir, env="production", data_dir=tmp_path),
                    registry=CollectorRegistry())
    with pytest.raises(ConfigError, match="RESPONDER_AUDIT_SIGNING_KEY_FILE"):
        await daemon.start()
    await daemon.shutdown()
    assert not await query(database, "SELECT 1 FROM pg_tables WHERE tablename = 'action_log'")
