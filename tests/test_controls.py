"""Operators' control of containment: list, release with reason and ticket, contain by hand."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from examples.exchange import Faults
from responder.cli import main
from responder.daemon import Daemon
from responder.store.locks import KEY_NS as KEY_LOCK_NS
from responder.store.locks import try_replica_name
from tests.conftest import (
    ADMIN_TOKEN,
    OPERATOR_TOKEN,
    SECOND_OPERATOR_TOKEN,
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

SPLIT_BRAIN = fixture_bytes("firing-single.json").replace(
    b"LedgerInvariantViolation", b"SplitBrainSuspected").replace(b"512b11d8b5516bb2",
                                                                 b"5b11d7a0c0ffee01")


async def call(http: aiohttp.ClientSession, daemon: Daemon, method: str, path: str,
               token: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url(daemon, path), json=body, headers=headers) as resp:
        return resp.status, await resp.json()


def release_body(to_level: str, ticket: str = "INC-4711") -> dict[str, str]:
    return {"to_level": to_level, "reason": "ledger reconciled by finance", "ticket": ticket}


async def contained(make_daemon: DaemonFactory, http: aiohttp.ClientSession) -> Daemon:
    daemon = await make_daemon()
    await post_alerts(http, daemon, SPLIT_BRAIN)
    await idle(daemon)
    return daemon


async def test_list_shows_what_is_contained_and_why(make_daemon: DaemonFactory,
                                                    http: aiohttp.ClientSession) -> None:
    """GET /v1/controls lists each raised key with its level, the rule that set it, its incident."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    status, body = await call(http, daemon, "GET", "/v1/controls", VIEWER_TOKEN)
    assert status == 200
    listed = {(c["control"], c["key"]): c for c in body["controls"]}
    assert set(listed) == {("withdrawals", "-"), ("symbol-mode", "BTC-USD")}
    symbol = listed[("symbol-mode", "BTC-USD")]
    assert (symbol["level"], symbol["set_by"], symbol["set_kind"]) == (
        "CANCEL_ONLY", "ledger-invariant-violation", "rule")
    assert symbol["incident_id"] == 1


@pytest.mark.parametrize(("token", "code", "error"), [
    (None, 401, "missing_token"),
    ("not-a-token", 401, "bad_token"),
    (VIEWER_TOKEN, 403, "forbidden_role"),
])
async def test_release_needs_an_operator(make_daemon: DaemonFactory, exchange: Exchange,
                                         http: aiohttp.ClientSession, token: str | None,
                                         code: int, error: str) -> None:
    """Without a token 401, as a viewer 403, each counted by reason, and nothing changes."""
    daemon = await contained(make_daemon, http)
    calls = len(exchange.state.calls)
    status, body = await call(http, daemon, "POST", "/v1/controls/symbol-mode/BTC-USD/release",
                              token, release_body("CANCEL_ONLY"))
    assert (status, body["error"]) == (code, error)
    assert len(exchange.state.calls) == calls
    assert daemon.metrics.rejected.labels("api", error)._value.get() == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"to_level": "CANCEL_ONLY", "reason": "done"}, "ticket"),
    ({"to_level": "CANCEL_ONLY", "reason": "done", "ticket": "  "}, "ticket"),
    ({"to_level": "CANCEL_ONLY", "ticket": "INC-1"}, "reason"),
    ({"reason": "done", "ticket": "INC-1"}, "to_level"),
    ({"to_level": "CANCEL_ONLY", "reason": "nul\x00here", "ticket": "INC-1"}, "reason"),
    ({"to_level": "CANCEL_ONLY", "reason": "done", "ticket": "INC-\ud800"}, "ticket"),
])
async def test_release_needs_reason_and_ticket(make_daemon: DaemonFactory, exchange: Exchange,
                                               http: aiohttp.ClientSession, body: Any,
                                               field: str) -> None:
    """A release without a reason or a ticket is refused with 400 naming the field."""
    daemon = await contained(make_daemon, http)
    calls = len(exchange.state.calls)
    status, answer = await call(http, daemon, "POST",
                                "/v1/controls/symbol-mode/BTC-USD/release", OPERATOR_TOKEN, body)
    assert (status, answer["error"]) == (400, "invalid_field")
    assert answer["message"].startswith(field)
    assert len(exchange.state.calls) == calls


async def test_release_walks_down_one_stop_at_a_time(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """HARD_HALT releases to CANCEL_ONLY first, then NORMAL; each is recorded with who and why."""
    daemon = await contained(make_daemon, http)
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"
    path = "/v1/controls/symbol-mode/BTC-USD/release"
    status, body = await call(http, daemon, "POST", path, OPERATOR_TOKEN, release_body("NORMAL"))
    assert (status, body["error"]) == (409, "one_step_at_a_time")
    assert "release to CANCEL_ONLY first" in body["message"]
    status, body = await call(http, daemon, "POST", path, OPERATOR_TOKEN,
                              release_body("CANCEL_ONLY"))
    assert status == 200, body
    assert (body["from"], body["level"], body["by"]) == ("HARD_HALT", "CANCEL_ONLY", "olga")
    assert exchange.state.symbols["BTC-USD"] == "CANCEL_ONLY"
    status, _ = await call(http, daemon, "POST", path, ADMIN_TOKEN, release_body("NORMAL"))
    assert status == 200
    assert exchange.state.symbols["BTC-USD"] == "NORMAL"
    status, body = await call(http, daemon, "POST", path, OPERATOR_TOKEN, release_body("NORMAL"))
    assert (status, body["error"]) == (409, "not_contained")
    _, listing = await call(http, daemon, "GET", "/v1/controls", VIEWER_TOKEN)
    assert listing["controls"] == []
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT kind, body FROM action_log WHERE kind LIKE 'release%'"
                                " ORDER BY seq")
    finally:
        await conn.close()
    assert [r["kind"] for r in rows] == ["release_intent", "release"] * 2
    assert all('"ticket":"INC-4711"' in r["body"] and '"reason":"ledger reconciled by finance"'
               in r["body"] for r in rows)
    assert '"by":"olga"' in rows[1]["body"] and '"by":"ada"' in rows[3]["body"]


async def test_release_the_target_refuses_keeps_the_level(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
) -> None:
    """If the target does not confirm the lower level, 502 and the held level stays (fail-safe)."""
    daemon = await contained(make_daemon, http)
    exchange.state.faults = Faults(fail_next=1, fail_status=409)
    status, body = await call(http, daemon, "POST", "/v1/controls/symbol-mode/BTC-USD/release",
                              OPERATOR_TOKEN, release_body("CANCEL_ONLY"))
    assert (status, body["error"]) == (502, "target_failed")
    _, listing = await call(http, daemon, "GET", "/v1/controls", VIEWER_TOKEN)
    assert [c["level"] for c in listing["controls"]] == ["HARD_HALT"]


async def test_contain_by_hand_only_raises(make_daemon: DaemonFactory, exchange: Exchange,
                                           http: aiohttp.ClientSession) -> None:
    """An operator can raise a level by hand with a reason; asking for a lower one is a 409."""
    daemon = await make_daemon()
    path = "/v1/controls/global-mode/-/contain"
    status, body = await call(http, daemon, "POST", path, OPERATOR_TOKEN,
                              {"to_level": "SOFT_HALT", "reason": "custodian outage"})
    assert status == 200, body
    assert exchange.state.global_mode == "SOFT_HALT"
    status, body = await call(http, daemon, "POST", path, OPERATOR_TOKEN,
                              {"to_level": "CANCEL_ONLY", "reason": "lower please"})
    assert (status, body["error"]) == (409, "already_contained")
    status, body = await call(http, daemon, "POST", "/v1/controls/nope/-/contain",
                              OPERATOR_TOKEN, {"to_level": "X", "reason": "r"})
    assert (status, body["error"]) == (404, "unknown_control")
    status, body = await call(http, daemon, "POST", "/v1/controls/symbol-mode/btc%20usd/contain",
                              OPERATOR_TOKEN, {"to_level": "HARD_HALT", "reason": "r"})
    assert (status, body["error"]) == (400, "invalid_key")
    _, listing = await call(http, daemon, "GET", "/v1/controls", VIEWER_TOKEN)
    assert [(c["control"], c["set_kind"], c["set_by"]) for c in listing["controls"]] == [
        ("global-mode", "manual", "olga")]


async def test_automation_raises_again_after_a_release(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
) -> None:
    """A released key is contained again by a new firing alert of another incident."""
    daemon = await contained(make_daemon, http)
    path = "/v1/controls/symbol-mode/BTC-USD/release"
    for level in ("CANCEL_ONLY", "NORMAL"):
        status, _ = await call(http, daemon, "POST", path, OPERATOR_TOKEN, release_body(level))
        assert status == 200
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    assert exchange.state.symbols["BTC-USD"] == "CANCEL_ONLY"


async def test_a_new_alert_contains_again_after_a_release(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    database: str,
) -> None:
    """Release closes the incident: a repeat of the same alert does nothing, a new one acts."""
    daemon = await contained(make_daemon, http)
    path = "/v1/controls/symbol-mode/BTC-USD/release"
    for level in ("CANCEL_ONLY", "NORMAL"):
        status, _ = await call(http, daemon, "POST", path, OPERATOR_TOKEN, release_body(level))
        assert status == 200
    await post_alerts(http, daemon, SPLIT_BRAIN)  # Alertmanager's repeat: same startsAt
    await idle(daemon)
    assert exchange.state.symbols["BTC-USD"] == "NORMAL"
    await post_alerts(http, daemon, SPLIT_BRAIN.replace(b"05:32:58.043380198Z",
                                                        b"09:00:00.000000000Z"))
    await idle(daemon)
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"
    assert "incident_closed" in await log_kinds(database)


async def test_cli_lists_and_releases(make_daemon: DaemonFactory, exchange: Exchange,
                                      http: aiohttp.ClientSession,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`responder controls` and `responder release` act through the API as the principal."""
    daemon = await contained(make_daemon, http)
    base = url(daemon, "")
    monkeypatch.setenv("RESPONDER_TOKEN", OPERATOR_TOKEN)
    assert await asyncio.to_thread(main, ["controls", "--url", base]) == 0
    assert "symbol-mode      BTC-USD        HARD_HALT" in capsys.readouterr().out
    argv = ["release", "symbol-mode", "BTC-USD", "--to", "NORMAL", "--reason", "ok",
            "--ticket", "INC-9", "--url", base]
    assert await asyncio.to_thread(main, argv) == 1
    assert "release to CANCEL_ONLY first" in capsys.readouterr().err
    argv[4] = "CANCEL_ONLY"
    assert await asyncio.to_thread(main, argv) == 0
    assert "HARD_HALT -> CANCEL_ONLY by olga" in capsys.readouterr().out
    assert exchange.state.symbols["BTC-USD"] == "CANCEL_ONLY"


def test_hash_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`responder hash-token` prints the SHA-256 a principal's token_sha256 takes."""
    monkeypatch.setattr("sys.stdin", io.StringIO("demo-operator-token\n"))
    assert main(["hash-token"]) == 0
    assert capsys.readouterr().out.strip() == (
        "61112491d046c3f6f8ab801f170d9b2d0c734a17ceff60dee92123fb507cfc3f")


def two_person(rules_dir: Path) -> None:
    controls = rules_dir / "controls.yaml"
    controls.write_text(controls.read_text().replace(
        "    release_stops: [NORMAL, CANCEL_ONLY]\n",
        "    release_stops: [NORMAL, CANCEL_ONLY]\n    two_person_release: true\n", 1))


async def test_two_person_release_needs_a_second_operator(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    rules_dir: Path, database: str,
) -> None:
    """A two-person release waits; its requester cannot approve it; another operator can."""
    two_person(rules_dir)
    daemon = await contained(make_daemon, http)
    status, body = await call(http, daemon, "POST", "/v1/controls/symbol-mode/BTC-USD/release",
                              OPERATOR_TOKEN, release_body("CANCEL_ONLY"))
    assert (status, body["status"]) == (202, "pending_approval")
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"
    _, pending = await call(http, daemon, "GET", "/v1/release-requests", VIEWER_TOKEN)
    assert [r["requested_by"] for r in pending["requests"]] == ["olga"]
    approve = f"/v1/release-requests/{body['request_id']}/approve"
    status, refused = await call(http, daemon, "POST", approve, OPERATOR_TOKEN)
    assert (status, refused["error"]) == (403, "same_person")
    status, done = await call(http, daemon, "POST", approve, SECOND_OPERATOR_TOKEN)
    assert status == 200, done
    assert exchange.state.symbols["BTC-USD"] == "CANCEL_ONLY"
    status, again = await call(http, daemon, "POST", approve, SECOND_OPERATOR_TOKEN)
    assert (status, again["error"]) == (409, "not_pending")
    kinds = [k for k in await log_kinds(database) if k.startswith("release")]
    assert kinds == ["release_requested", "release_approved", "release_intent", "release"]


async def test_an_approval_does_not_release_a_newer_containment(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    rules_dir: Path,
) -> None:
    """Released from CANCEL_ONLY, approved after a new incident raised the key to HARD_HALT:
    the new containment ended the request, so the approval is refused and the key stays."""
    two_person(rules_dir)
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    assert exchange.state.symbols["BTC-USD"] == "CANCEL_ONLY"
    status, body = await call(http, daemon, "POST", "/v1/controls/symbol-mode/BTC-USD/release",
                              OPERATOR_TOKEN, release_body("NORMAL"))
    assert status == 202, body
    await post_alerts(http, daemon, SPLIT_BRAIN)
    await idle(daemon)
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"
    approve = f"/v1/release-requests/{body['request_id']}/approve"
    status, refused = await call(http, daemon, "POST", approve, SECOND_OPERATOR_TOKEN)
    assert (status, refused["error"]) == (409, "not_pending")
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"


async def test_unapproved_release_expires_and_stays_contained(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    rules_dir: Path, database: str,
) -> None:
    """A release not approved within its TTL expires, is recorded, and changes nothing."""
    two_person(rules_dir)
    daemon = await make_daemon(release_approval_ttl_s=0.5)
    await post_alerts(http, daemon, SPLIT_BRAIN)
    await idle(daemon)
    status, body = await call(http, daemon, "POST", "/v1/controls/symbol-mode/BTC-USD/release",
                              OPERATOR_TOKEN, release_body("CANCEL_ONLY"))
    assert status == 202
    await wait_for(lambda: _has_kind(database, "release_expired"), timeout_s=10,
                   what="the request to expire")
    status, late = await call(http, daemon, "POST",
                              f"/v1/release-requests/{body['request_id']}/approve",
                              SECOND_OPERATOR_TOKEN)
    assert (status, late["error"]) == (409, "not_pending")
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"


async def _has_kind(dsn: str, kind: str) -> bool:
    return kind in await log_kinds(dsn)


@pytest.mark.parametrize("path", [
    "/v1/actions?rule=%00", "/v1/actions?control=a%00b", "/v1/actions?kind=%00",
    "/v1/actions?correlation_id=%00",
])
async def test_filters_postgres_cannot_compare_get_400(make_daemon: DaemonFactory,
                                                        http: aiohttp.ClientSession,
                                                        path: str) -> None:
    daemon = await make_daemon()
    status, answer = await call(http, daemon, "GET", path, VIEWER_TOKEN)
    assert (status, answer["error"]) == (400, "invalid_query")


async def test_a_nul_in_the_key_gets_400(make_daemon: DaemonFactory,
                                         http: aiohttp.ClientSession) -> None:
    daemon = await make_daemon()
    status, answer = await call(http, daemon, "POST", "/v1/controls/symbol-mode/BT%00C/contain",
                                OPERATOR_TOKEN, {"to_level": "HARD_HALT", "reason": "x"})
    assert (status, answer["error"]) == (400, "invalid_field")


async def test_a_person_waits_for_automation_on_another_replica(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """A live claim by another replica on the key makes a release wait, then answer 409."""
    daemon = await make_daemon(manual_wait_s=0.5)
    await post_alerts(http, daemon, SPLIT_BRAIN)
    await idle(daemon)
    conn = await asyncpg.connect(database)
    try:
        incident = await conn.fetchval("SELECT id FROM incidents")
        # replica-b is alive: its session holds its name (else its claims are taken over)
        assert await try_replica_name(conn, "replica-b")
        step = await conn.fetchval(
            "INSERT INTO steps (incident_id, kind, position, control, key, level, rank,"
            " idempotency_key, claimed_by, lease_until) VALUES ($1, 'step', 9, 'symbol-mode',"
            " 'BTC-USD', 'SOFT_HALT', 2, 'other-key', 'replica-b', now() + interval '1 min')"
            " RETURNING id", incident)
        calls = len(exchange.state.calls)
        status, answer = await call(http, daemon, "POST",
                                    "/v1/controls/symbol-mode/BTC-USD/release", OPERATOR_TOKEN,
                                    release_body("CANCEL_ONLY"))
        assert (status, answer["error"]) == (409, "key_busy")
        assert "replica-b" in answer["message"]
        assert len(exchange.state.calls) == calls
        await conn.execute("UPDATE steps SET status = 'done' WHERE id = $1", step)
    finally:
        await conn.close()
    status, _ = await call(http, daemon, "POST", "/v1/controls/symbol-mode/BTC-USD/release",
                           OPERATOR_TOKEN, release_body("CANCEL_ONLY"))
    assert status == 200
    assert exchange.state.symbols["BTC-USD"] == "CANCEL_ONLY"


async def test_automation_waits_for_a_person_on_another_replica(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """While a person's change holds the key (the lock another replica's API takes), an
    automatic step on it is not called; it runs once the key is free."""
    daemon = await make_daemon(sweep_interval_s=0.2)
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("SELECT pg_advisory_lock($1, hashtext('symbol-mode/BTC-USD'))",
                           KEY_LOCK_NS)
        await post_alerts(http, daemon, SPLIT_BRAIN)
        await asyncio.sleep(1.5)
        assert "BTC-USD" not in exchange.state.symbols
        await conn.execute("SELECT pg_advisory_unlock($1, hashtext('symbol-mode/BTC-USD'))",
                           KEY_LOCK_NS)
        await wait_for(lambda: exchange.state.symbols.get("BTC-USD") == "HARD_HALT",
                       what="the step once the key is free")
    finally:
        await conn.close()
