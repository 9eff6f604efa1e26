"""The action log is append-only and its hash chain exposes the first tampered record."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest

from responder.cli import main
from responder.errors import AuditChainError
from responder.store.actionlog import verify_chain
from tests.conftest import DaemonFactory, fixture_bytes, idle, post_alerts


async def _filled(make_daemon: DaemonFactory, http: aiohttp.ClientSession) -> None:
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await post_alerts(http, daemon, fixture_bytes("firing-group-truncated.json"))
    await idle(daemon)
    await daemon.shutdown()


@pytest.mark.parametrize("statement", [
    "UPDATE action_log SET kind = 'nothing' WHERE seq = 2",
    "DELETE FROM action_log WHERE seq = 2",
    "TRUNCATE action_log",
])
async def test_trigger_refuses_rewrites(make_daemon: DaemonFactory, http: aiohttp.ClientSession,
                                        database: str, statement: str) -> None:
    """UPDATE, DELETE and TRUNCATE on the action log are refused by the database itself."""
    await _filled(make_daemon, http)
    conn = await asyncpg.connect(database)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM action_log") > 5
    finally:
        await conn.close()


async def _tamper(database: str, sql: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        # Only a superuser bypassing triggers can do this; the chain must still tell.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(sql)
    finally:
        await conn.close()


async def _verify(database: str) -> str:
    conn = await asyncpg.connect(database)
    try:
        with pytest.raises(AuditChainError) as exc:
            await verify_chain(conn)
    finally:
        await conn.close()
    return str(exc.value)


async def test_chain_verifies_and_names_an_edited_record(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`audit verify` passes an intact log and names record 4 once its body is edited."""
    await _filled(make_daemon, http)
    monkeypatch.setenv("RESPONDER_DATABASE_URL", database)
    assert await _run_cli(["audit", "verify"]) == 0
    assert "action log OK" in capsys.readouterr().out
    await _tamper(database, "UPDATE action_log SET body = replace(body, 'HALTED', 'OPEN')"
                            " WHERE seq = 4")
    assert await _verify(database) == "record 4: hash does not match its body"
    assert await _run_cli(["audit", "verify"]) == 1
    assert "record 4" in capsys.readouterr().err


async def test_chain_names_a_deleted_record(make_daemon: DaemonFactory,
                                            http: aiohttp.ClientSession, database: str) -> None:
    """Removing a record from the middle breaks the chain at that record."""
    await _filled(make_daemon, http)
    await _tamper(database, "DELETE FROM action_log WHERE seq = 3")
    assert await _verify(database) == "record 3 is missing (next is 4)"


async def test_chain_names_a_recomputed_record(make_daemon: DaemonFactory,
                                               http: aiohttp.ClientSession,
                                               database: str) -> None:
    """Re-hashing an edited record does not help: the next record's prev_hash disagrees."""
    await _filled(make_daemon, http)
    await _tamper(database, "UPDATE action_log SET hash = repeat('a', 64) WHERE seq = 5")
    message = await _verify(database)
    assert message.startswith("record 5")


async def test_columns_must_match_the_hashed_body(make_daemon: DaemonFactory,
                                                  http: aiohttp.ClientSession,
                                                  database: str) -> None:
    """Editing a filter column without touching the body is caught too."""
    await _filled(make_daemon, http)
    await _tamper(database, "UPDATE action_log SET control = 'withdrawals' WHERE seq = 5")
    assert await _verify(database) == "record 5: columns differ from the hashed body"


async def _run_cli(argv: list[str]) -> int:
    import asyncio

    return await asyncio.to_thread(main, argv)
