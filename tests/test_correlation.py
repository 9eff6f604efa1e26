"""One correlation id follows an alert delivery: its answer, log lines, records, bundle, page."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.conftest import (
    WEBHOOK_TOKEN,
    Exchange,
    Proc,
    fixture_bytes,
    spawn_daemon,
    wait_for,
)


async def _fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _post(http: aiohttp.ClientSession, port: int, body: bytes,
                headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with http.post(f"http://127.0.0.1:{port}/webhooks/alertmanager", data=body,
                         headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}",
                                  **(headers or {})}) as resp:
        return resp.status, resp.headers["X-Correlation-Id"]


async def test_one_id_from_arrival_to_last_action(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    sink_dir = tmp_path / "sink"
    env = {
        "RESPONDER_DATABASE_URL": database,
        "RESPONDER_RULES_DIR": str(rules_dir),
        "RESPONDER_WEBHOOK_TOKENS": WEBHOOK_TOKEN,
        "RESPONDER_LOG_LEVEL": "debug",
        "RESPONDER_SINKS": json.dumps([{"name": "files", "kind": "file", "dir": str(sink_dir),
                                        "pages": True}]),
    }
    proc = await asyncio.to_thread(spawn_daemon, tmp_path, env)
    procs.append(proc)
    status, cid = await _post(http, proc.port, fixture_bytes("firing-single.json"))
    assert status == 200 and len(cid) == 16
    await wait_for(lambda: exchange.state.withdrawals == "HALTED", what="containment")

    async def settled() -> bool:
        rows = await _fetch(database, "SELECT count(*) AS n FROM steps WHERE status = 'pending'"
                                      " UNION ALL SELECT count(*) FROM outbox"
                                      " WHERE status <> 'delivered'")
        pages = list(sink_dir.glob("*page*.json")) if sink_dir.is_dir() else []
        return all(r["n"] == 0 for r in rows) and bool(pages)

    await wait_for(settled, what="outcomes and a delivered page")
    proc.popen.send_signal(signal.SIGTERM)
    await asyncio.to_thread(proc.popen.wait, 30)

    records = await _fetch(database, "SELECT kind, correlation_id, body FROM action_log"
                                     " WHERE incident_id IS NOT NULL OR kind = 'alert_received'"
                                     " ORDER BY seq")
    kinds = [r["kind"] for r in records]
    assert {"alert_received", "incident_opened", "intent", "outcome"} <= set(kinds)
    assert {r["correlation_id"] for r in records} == {cid}
    assert all(json.loads(r["body"])["correlation_id"] == cid for r in records)
    [incident] = await _fetch(database, "SELECT correlation_id FROM incidents")
    assert incident["correlation_id"] == cid
    [bundle] = await _fetch(database, "SELECT body FROM evidence ORDER BY version DESC LIMIT 1")
    assert json.loads(bundle["body"])["incident"]["correlation_id"] == cid
    pages = [json.loads(p.read_text()) for p in sink_dir.glob("*page*.json")]
    assert pages and all(p["correlation_id"] == cid for p in pages)

    lines = [json.loads(line) for line in proc.log().splitlines() if line.startswith("{")]
    on_path = [line for line in lines
               if line["event"] in ("alerts recorded", "step applied", "step failed")]
    assert {line["event"] for line in on_path} >= {"alerts recorded", "step applied"}
    assert {line.get("correlation_id") for line in on_path} == {cid}
    request_lines = [line for line in lines if line.get("correlation_id") == cid]
    assert len(request_lines) >= len(on_path)


async def test_a_sane_offered_id_is_kept_and_a_hostile_one_replaced(
    make_daemon: Any, http: aiohttp.ClientSession,
) -> None:
    daemon = await make_daemon()
    port = daemon.port
    body = fixture_bytes("firing-single.json")
    status, cid = await _post(http, port, body, {"X-Correlation-Id": "am-retry-7f3a9c01"})
    assert status == 200 and cid == "am-retry-7f3a9c01"
    status, cid = await _post(http, port, body, {"X-Correlation-Id": "<script>\u202e"})
    assert status == 200 and cid != "<script>\u202e" and len(cid) == 16
