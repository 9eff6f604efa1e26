"""Modes: dry-run and paused record without acting; break-glass expires; stale alerts wait."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from structlog.testing import capture_logs

from responder.daemon import Daemon
from tests.conftest import (
    ADMIN_TOKEN,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    DaemonFactory,
    Exchange,
    fixture_bytes,
    idle,
    log_kinds,
    post_alerts,
    url,
    wait_for,
)


async def call(http: aiohttp.ClientSession, daemon: Daemon, method: str, path: str,
               token: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, url(daemon, path), json=body,
                            headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


def ledger(fingerprint: str, starts_at: str = "") -> bytes:
    payload = json.loads(fixture_bytes("firing-single.json"))
    payload["alerts"][0]["fingerprint"] = fingerprint
    if starts_at:
        payload["alerts"][0]["startsAt"] = starts_at
    return json.dumps(payload).encode()


async def records(dsn: str, kind: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT body FROM action_log WHERE kind = $1 ORDER BY seq", kind)
    finally:
        await conn.close()
    return [json.loads(r["body"]) for r in rows]


async def test_only_admins_switch_modes(make_daemon: DaemonFactory,
                                        http: aiohttp.ClientSession, database: str) -> None:
    """Switching the mode needs the admin role and a reason, and is recorded with both."""
    daemon = await make_daemon()
    body = {"mode": "dry_run", "reason": "rehearsal"}
    assert (await call(http, daemon, "POST", "/v1/mode", OPERATOR_TOKEN, body))[0] == 403
    status, answer = await call(http, daemon, "POST", "/v1/mode", ADMIN_TOKEN, {"mode": "x",
                                                                               "reason": "r"})
    assert (status, answer["error"]) == (400, "invalid_field")
    assert (await call(http, daemon, "POST", "/v1/mode", ADMIN_TOKEN, {"mode": "paused"}))[0] \
        == 400
    status, answer = await call(http, daemon, "POST", "/v1/mode", ADMIN_TOKEN, body)
    assert (status, answer["mode"]) == (200, "dry_run")
    assert (await call(http, daemon, "GET", "/v1/mode", VIEWER_TOKEN))[1]["mode"] == "dry_run"
    [changed] = await records(database, "mode_changed")
    assert changed["detail"] == {"from": "enforce", "to": "dry_run", "by": "ada",
                                 "reason": "rehearsal"}


async def test_dry_run_records_what_it_would_do(make_daemon: DaemonFactory, exchange: Exchange,
                                                http: aiohttp.ClientSession,
                                                database: str) -> None:
    """In dry_run no admin call is made; the log shows each intended call."""
    daemon = await make_daemon()
    await call(http, daemon, "POST", "/v1/mode", ADMIN_TOKEN, {"mode": "dry_run",
                                                                "reason": "rehearsal"})
    status, _ = await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    assert status == 200
    await idle(daemon)
    assert exchange.state.calls == []
    would = await records(database, "would_act")
    assert [(w["control"], w["detail"]["level"], w["detail"]["effect"]) for w in would] == [
        ("withdrawals", "HALTED", "dry_run"), ("symbol-mode", "CANCEL_ONLY", "dry_run")]
    incident = would[1]["incident_id"]
    assert would[1]["detail"]["request"] == {
        "method": "PUT", "target": "exchange", "path": "/admin/symbols/BTC-USD/mode",
        "body": {"mode": "CANCEL_ONLY", "audit": {
            "rule": "ledger-invariant-violation", "incident": str(incident), "ticket": "",
            "reason": f"responder step for incident {incident}"
                      " (rule ledger-invariant-violation)"}}}
    assert "intent" not in await log_kinds(database)


async def test_rule_level_dry_run(make_daemon: DaemonFactory, exchange: Exchange,
                                  http: aiohttp.ClientSession, rules_dir: Path) -> None:
    """A rule marked dry_run only records; other rules still act."""
    spot = rules_dir / "spot-exchange.yaml"
    spot.write_text(spot.read_text().replace(
        "    description: Split-brain suspected; hard-halt the symbol.\n",
        "    description: Split-brain suspected; hard-halt the symbol.\n    mode: dry_run\n"))
    daemon = await make_daemon()
    split = fixture_bytes("firing-single.json").replace(
        b"LedgerInvariantViolation", b"SplitBrainSuspected").replace(b"512b11d8", b"aaaaaaaa")
    await post_alerts(http, daemon, split)
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY"}


async def test_paused_records_and_pages(make_daemon: DaemonFactory, exchange: Exchange,
                                        http: aiohttp.ClientSession) -> None:
    """Paused: the alert is recorded, nothing is called, and an error-level log asks for a page."""
    daemon = await make_daemon()
    await call(http, daemon, "POST", "/v1/mode", ADMIN_TOKEN, {"mode": "paused",
                                                                "reason": "migration"})
    with capture_logs() as logs:
        status, body = await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
        await idle(daemon)
    assert (status, body["recorded"]) == (200, 1)
    assert exchange.state.calls == []
    assert any(e["log_level"] == "error" and "paused" in e["event"] for e in logs)


async def test_break_glass_pauses_then_expires(make_daemon: DaemonFactory, exchange: Exchange,
                                               http: aiohttp.ClientSession,
                                               database: str) -> None:
    """Break-glass pauses automation for its TTL, then ends by itself, and both are recorded."""
    daemon = await make_daemon()
    status, answer = await call(http, daemon, "POST", "/v1/break-glass", ADMIN_TOKEN,
                                {"ttl_s": 1, "reason": "exchange maintenance"})
    assert status == 200 and answer["break_glass"]["by"] == "ada"
    await post_alerts(http, daemon, ledger("first-alert"))
    await idle(daemon)
    assert exchange.state.calls == []
    await wait_for(lambda: _kind_seen(database, "break_glass_ended"), timeout_s=10,
                   what="break-glass to expire")
    await post_alerts(http, daemon, ledger("second-alert"))
    await idle(daemon)
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY"}
    [ended] = await records(database, "break_glass_ended")
    assert ended["detail"]["how"] == "expired"


async def _kind_seen(dsn: str, kind: str) -> bool:
    return bool(await records(dsn, kind))


async def test_stale_alerts_are_recorded_not_acted(make_daemon: DaemonFactory,
                                                   exchange: Exchange,
                                                   http: aiohttp.ClientSession,
                                                   database: str) -> None:
    """With max_alert_age_s set, an alert that started long ago is recorded and not acted on."""
    daemon = await make_daemon(max_alert_age_s=600)
    await post_alerts(http, daemon, ledger("old", "2020-01-01T00:00:00.123456789Z"))
    await idle(daemon)
    assert exchange.state.calls == []
    assert {w["detail"]["effect"] for w in await records(database, "would_act")} == {"stale"}


async def test_mode_survives_a_restart(make_daemon: DaemonFactory,
                                       http: aiohttp.ClientSession) -> None:
    """The mode is stored: a restarted daemon comes back in dry_run."""
    first = await make_daemon()
    await call(http, first, "POST", "/v1/mode", ADMIN_TOKEN, {"mode": "dry_run",
                                                               "reason": "rehearsal"})
    await first.shutdown()
    second = await make_daemon()
    assert (await call(http, second, "GET", "/v1/mode", VIEWER_TOKEN))[1]["mode"] == "dry_run"
