"""The Alertmanager webhook: durable recording, re-deliveries, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import (
    VIEWER_TOKEN,
    DaemonFactory,
    Exchange,
    fixture_bytes,
    idle,
    log_kinds,
    post_alerts,
    url,
)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, or 0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric_name, _, label_text = series.partition("{")
        got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric_name == name and got == want:
            return float(value)
    return 0.0


async def metrics_text(http: aiohttp.ClientSession, daemon: Any) -> str:
    async with http.get(url(daemon, "/metrics")) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_firing_alert_is_contained(make_daemon: DaemonFactory, exchange: Exchange,
                                         http: aiohttp.ClientSession, database: str) -> None:
    """A firing LedgerInvariantViolation halts withdrawals and sets the symbol CANCEL_ONLY."""
    daemon = await make_daemon()
    status, body = await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    assert (status, body["recorded"], body["redelivered"]) == (200, 1, 0)
    await idle(daemon)
    assert exchange.state.withdrawals == "HALTED"
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY"}
    assert [c.path for c in exchange.applied()] == ["/admin/withdrawals",
                                                    "/admin/symbols/BTC-USD/mode"]
    assert all(c.idempotency_key for c in exchange.state.calls)
    kinds = await log_kinds(database)
    assert kinds[:3] == ["alert_received", "incident_opened", "alert_matched"]
    assert kinds.count("intent") == 2 and kinds.count("outcome") == 2


async def test_alert_is_durable_before_the_answer(make_daemon: DaemonFactory,
                                                  http: aiohttp.ClientSession,
                                                  database: str) -> None:
    """By the time the 2xx arrives, every alert of the payload is in the inbox."""
    daemon = await make_daemon()
    status, _ = await post_alerts(http, daemon, fixture_bytes("firing-group-truncated.json"))
    assert status == 200
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT fingerprint, starts_at FROM inbox ORDER BY id")
    finally:
        await conn.close()
    assert [r["fingerprint"] for r in rows] == ["226dbbdde2bf7fbc", "5f1333ae3fef3108"]
    assert rows[0]["starts_at"] == "2026-11-23T05:32:58.056627739Z"  # nanoseconds kept


async def test_redelivery_never_acts_again(make_daemon: DaemonFactory, exchange: Exchange,
                                           http: aiohttp.ClientSession, database: str) -> None:
    """The same alert re-sent (repeat, retry, HA twin) is counted and calls nothing."""
    daemon = await make_daemon()
    payload = fixture_bytes("firing-single.json")
    await post_alerts(http, daemon, payload)
    await idle(daemon)
    calls_before = len(exchange.state.calls)
    for _ in range(3):
        status, body = await post_alerts(http, daemon, payload)
        assert (status, body["recorded"], body["redelivered"]) == (200, 0, 1)
    await idle(daemon)
    assert len(exchange.state.calls) == calls_before
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT deliveries FROM inbox") == 4
    finally:
        await conn.close()
    text = await metrics_text(http, daemon)
    assert metric(text, "responder_alert_redeliveries_total", source="alertmanager") == 3


async def test_rotated_tokens_are_both_accepted(make_daemon: DaemonFactory,
                                                http: aiohttp.ClientSession) -> None:
    """Any configured webhook token is accepted, so tokens can be rotated."""
    daemon = await make_daemon()
    status, _ = await post_alerts(http, daemon, fixture_bytes("firing-single.json"),
                                  token="rotated-webhook-token-2")
    assert status == 200


def _am(**changes: Any) -> bytes:
    payload = json.loads(fixture_bytes("firing-single.json"))
    alert_changes = changes.pop("alert", {})
    payload["alerts"][0].update(alert_changes)
    for key in [k for k, v in payload["alerts"][0].items() if v is None]:
        del payload["alerts"][0][key]
    payload.update(changes)
    return json.dumps(payload).encode()


BAD_INPUTS = [
    ("malformed JSON", b'{"version": "4", "alerts": [', None, 400, "malformed_json", ""),
    ("not an object", b"[1, 2]", None, 400, "malformed_json", ""),
    ("missing field", _am(alert={"fingerprint": None}), None, 400, "invalid_field",
     "alerts.0.fingerprint"),
    ("ill-typed label", _am(alert={"labels": {"symbol": 7}}), None, 400, "invalid_field",
     "alerts.0.labels.symbol"),
    ("wrong version", _am(version="3"), None, 400, "invalid_field", "version"),
    ("bad status", _am(status="exploded"), None, 400, "invalid_field", "status"),
    ("bad startsAt", _am(alert={"startsAt": "yesterday"}), None, 400, "invalid_field",
     "alerts.0.startsAt"),
    ("no alerts", _am(alerts=[]), None, 400, "invalid_field", "alerts"),
    ("no token", fixture_bytes("firing-single.json"), "", 401, "missing_token", ""),
    ("wrong token", fixture_bytes("firing-single.json"), "wrong", 401, "bad_token", ""),
    ("oversized", b'{"x": "' + b"a" * 70_000 + b'"}', None, 413, "body_too_large", ""),
    ("NUL in a label", _am(alert={"labels": {"alertname": "X", "symbol": "a\u0000b"}}), None,
     400, "invalid_field", "alerts.0.labels.symbol"),
    ("lone surrogate", _am(alert={"annotations": {"summary": "\ud800"}}), None, 400,
     "invalid_field", "alerts.0.annotations.summary"),
]


@pytest.mark.parametrize(("what", "body", "token", "code", "reason", "field"), BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
async def test_bad_input_is_refused_with_a_reason(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    database: str, what: str, body: bytes, token: str | None, code: int, reason: str,
    field: str,
) -> None:
    """Bad input gets a clear 4xx naming the field, a metric with the reason, and no action."""
    daemon = await make_daemon(max_body_bytes=65_536)
    headers = {"Content-Type": "application/json"}
    if token is None:
        headers["Authorization"] = "Bearer test-webhook-token-0123"
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    async with http.post(url(daemon, "/webhooks/alertmanager"), data=body,
                         headers=headers) as resp:
        assert resp.status == code
        answer = await resp.json()
    assert answer["error"] == reason
    assert answer["message"]
    if field:
        assert answer["message"].startswith(f"{field}: ")
    text = await metrics_text(http, daemon)
    assert metric(text, "responder_intake_rejected_total", source="alertmanager",
                  reason=reason) == 1
    assert exchange.state.calls == []
    assert await log_kinds(database) == []


async def test_hostile_label_values_take_no_keyed_action(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    database: str,
) -> None:
    """A symbol that fails the key pattern never reaches a URL; the rule escalates instead."""
    daemon = await make_daemon()
    hostile = "../../admin/global?x=1\n"
    status, _ = await post_alerts(http, daemon, _am(alert={"labels": {
        "alertname": "LedgerInvariantViolation", "severity": "sev1", "symbol": hostile}}))
    assert status == 200
    await idle(daemon)
    assert all("admin/global?x" not in c.path and "symbols" not in c.path
               for c in exchange.state.calls)
    assert exchange.state.global_mode == "SOFT_HALT"  # the rule's escalation
    assert exchange.state.withdrawals == "HALTED"  # unkeyed steps still run
    kinds = await log_kinds(database)
    assert "key_rejected" in kinds
    text = await metrics_text(http, daemon)
    assert metric(text, "responder_key_rejected_total", rule="ledger-invariant-violation",
                  control="symbol-mode") == 1


async def test_truncated_group_escalates_scope(make_daemon: DaemonFactory, exchange: Exchange,
                                               http: aiohttp.ClientSession,
                                               database: str) -> None:
    """truncatedAlerts > 0 means unseen symbols: contain what is seen and, for a
    split-brain (runbook 3.3), hard-halt globally."""
    daemon = await make_daemon()
    status, _ = await post_alerts(http, daemon, fixture_bytes("firing-group-truncated.json"))
    assert status == 200
    await idle(daemon)
    assert exchange.state.symbols == {"BTC-USD": "HARD_HALT", "ETH-USD": "HARD_HALT"}
    assert exchange.state.global_mode == "HARD_HALT"
    assert "scope_unknown" in await log_kinds(database)
    assert len([c for c in exchange.applied() if c.path == "/admin/global/mode"]) == 1


async def test_read_api_needs_a_viewer_token(make_daemon: DaemonFactory,
                                             http: aiohttp.ClientSession) -> None:
    """/v1/actions and /v1/incidents answer 401 without a viewer token and filter with one."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    async with http.get(url(daemon, "/v1/actions")) as resp:
        assert resp.status == 401
    async with http.get(url(daemon, "/v1/actions"),
                        headers={"Authorization": "Bearer test-webhook-token-0123"}) as resp:
        assert resp.status == 401  # webhook tokens are not viewer tokens
    auth = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    async with http.get(url(daemon, "/v1/actions?control=symbol-mode&kind=outcome"),
                        headers=auth) as resp:
        records = (await resp.json())["records"]
    assert [(r["key"], r["detail"]["status"]) for r in records] == [("BTC-USD", "applied")]
    async with http.get(url(daemon, "/v1/actions?limit=2"), headers=auth) as resp:
        page = await resp.json()
    assert len(page["records"]) == 2 and page["next_after"] == 2
    async with http.get(url(daemon, f"/v1/actions?after={page['next_after']}&limit=2"),
                        headers=auth) as resp:
        assert (await resp.json())["records"][0]["seq"] == 3
    async with http.get(url(daemon, "/v1/actions?since=yesterday"), headers=auth) as resp:
        assert resp.status == 400
    incident_id = records[0]["incident_id"]
    async with http.get(url(daemon, f"/v1/incidents/{incident_id}"), headers=auth) as resp:
        incident = await resp.json()
    assert incident["incident"]["rule_id"] == "ledger-invariant-violation"
    kinds = [r["kind"] for r in incident["timeline"]]
    assert kinds[0] == "incident_opened" and "alert_matched" in kinds
    assert [s["status"] for s in incident["steps"]] == ["done", "done"]
    async with http.get(url(daemon, "/v1/incidents/999"), headers=auth) as resp:
        assert resp.status == 404


async def test_health_and_readiness(make_daemon: DaemonFactory,
                                    http: aiohttp.ClientSession) -> None:
    """/healthz is alive, /readyz reports store and rules, /metrics is Prometheus text."""
    daemon = await make_daemon()
    async with http.get(url(daemon, "/healthz")) as resp:
        assert resp.status == 200
    async with http.get(url(daemon, "/readyz")) as resp:
        ready = await resp.json()
        assert resp.status == 200
    assert daemon.state is not None
    shipped = len(daemon.state.rules.rules)
    assert ready["store"] is True and ready["rules"] == shipped > 0
    text = await metrics_text(http, daemon)
    assert metric(text, "responder_rules_loaded") == shipped


async def test_draining_daemon_answers_503(make_daemon: DaemonFactory, exchange: Exchange,
                                           http: aiohttp.ClientSession,
                                           tmp_path: Path) -> None:
    """Once shutdown begins, webhooks answer 503 (Alertmanager retries) and nothing acts."""
    daemon = await make_daemon()
    assert daemon.state is not None
    daemon.state.is_draining = True
    status, body = await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    assert (status, body["error"]) == (503, "draining")
    async with http.get(url(daemon, "/readyz")) as resp:
        assert resp.status == 503
    assert exchange.state.calls == []
    daemon.state.is_draining = False
