"""Forensic bundles: sealed per incident, versioned by digest, exported and verified."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from responder.cli import main
from responder.daemon import Daemon
from tests.conftest import (
    EXCHANGE_TOKEN,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    DaemonFactory,
    fixture_bytes,
    idle,
    post_alerts,
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
