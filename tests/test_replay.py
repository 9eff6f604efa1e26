"""`responder replay`: a changed rule shows exactly its differences, from a file and from the
store; an unchanged table shows none; nothing is called."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from examples.exchange import Faults
from responder.cli import main
from responder.replay.command import from_store, load_table, parse_since
from responder.replay.diff import Difference
from tests.conftest import OPERATOR_TOKEN, DaemonFactory, Exchange, idle, post_alerts
from tests.test_controls import call, release_body
from tests.test_engine import alert, payload

ROOT = Path(__file__).resolve().parent.parent

ALERTS = [
    # An Alertmanager payload, then alerts in responder's own shape.
    {"version": "4", "status": "firing", "receiver": "r", "groupKey": "{}",
     "truncatedAlerts": 0, "alerts": [{
         "status": "firing", "fingerprint": "a1", "annotations": {},
         "labels": {"alertname": "LedgerInvariantViolation", "severity": "sev1",
                    "symbol": "BTC-USD"},
         "startsAt": "2026-11-23T05:32:58Z", "endsAt": "0001-01-01T00:00:00Z"}]},
    {"status": "firing", "starts_at": "2026-11-23T05:40:00Z",
     "labels": {"alertname": "PostgresFailover", "severity": "sev1"}},
    {"status": "firing", "starts_at": "2026-11-23T05:41:00Z",
     "labels": {"alertname": "SplitBrainSuspected", "severity": "sev1", "symbol": "ETH-USD"}},
]

EXPECTED = [
    Difference("level", "symbol-mode", "BTC-USD", ("CANCEL_ONLY",), ("HARD_HALT",),
               ("ledger-invariant-violation",)),
    Difference("matched", before=("postgres-failover",)),
    Difference("missing", "global-mode", "", ("CANCEL_ONLY",), (), ("postgres-failover",)),
    Difference("missing", "withdrawals", "", ("HALTED",), (), ("postgres-failover",)),
]


def candidate(tmp_path: Path) -> Path:
    """The shipped rules with two edits: the ledger rule hard-halts the symbol, and the
    failover rule's matcher no longer matches PostgresFailover."""
    rules = tmp_path / "candidate"
    shutil.copytree(ROOT / "rules", rules)
    path = rules / "spot-exchange.yaml"
    text = path.read_text()
    text = text.replace("{control: symbol-mode, level: CANCEL_ONLY}",
                        "{control: symbol-mode, level: HARD_HALT}", 1)
    text = text.replace('alertname="PostgresFailover"', 'alertname="PostgresFailedOver"')
    path.write_text(text)
    return rules


def as_differences(changed: list[dict[str, object]]) -> list[list[Difference]]:
    return [[Difference(d["what"], d["control"], d["key"], tuple(d["before"]),
                        tuple(d["after"]), tuple(d["rules"]))
             for d in a["differences"]]  # type: ignore[attr-defined]
            for a in changed]


def test_file_replay_shows_exactly_the_changed_rules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """From a JSON-lines file, the changed level and the lost match are all that differ."""
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text("\n".join(json.dumps(a) for a in ALERTS) + "\n")
    args = ["replay", "--rules", str(candidate(tmp_path)), "--from", str(alerts),
            "--baseline", str(ROOT / "rules")]
    assert main([*args, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["alerts"] == 3
    assert [a["ref"] for a in report["changed"]] == ["alerts.jsonl:1", "alerts.jsonl:2"]
    assert as_differences(report["changed"]) == [EXPECTED[:1], EXPECTED[1:]]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "level    symbol-mode[BTC-USD]: CANCEL_ONLY -> HARD_HALT" in out
    assert "3 alerts replayed, 2 with differences: 0 new, 2 missing, 1 level, 1 matched" in out


def test_file_replay_of_the_same_table_differs_in_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A JSON list of the same alerts against the table itself exits 0."""
    alerts = tmp_path / "alerts.json"
    alerts.write_text(json.dumps(ALERTS))
    assert main(["replay", "--rules", str(ROOT / "rules"), "--from", str(alerts),
                 "--baseline", str(ROOT / "rules")]) == 0
    assert "3 alerts replayed, 0 with differences" in capsys.readouterr().out


def test_a_new_rule_shows_new_actions(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Enabling a pack in the candidate shows its actions as new, and its match."""
    rules = tmp_path / "candidate"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "edge.yaml").write_text((ROOT / "rules" / "edge.yaml").read_text().replace(
        "pack: edge\n", ""))
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(json.dumps({"status": "firing", "starts_at": "2026-11-23T05:41:00Z",
                                  "labels": {"alertname": "alert_tenant_mismatch_spike"}}))
    assert main(["replay", "--rules", str(rules), "--from", str(alerts), "--baseline",
                 str(ROOT / "rules"), "--json"]) == 1
    [changed] = json.loads(capsys.readouterr().out)["changed"]
    assert as_differences([changed]) == [[
        Difference("matched", after=("edge-tenant-mismatch",)),
        Difference("new", "edge-mode", "", (), ("FAIL_CLOSED",), ("edge-tenant-mismatch",))]]


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line that is not an alert is an error naming file and line, exit code 2."""
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(json.dumps(ALERTS[1]) + "\n" + '{"status": "firing"}\n')
    assert main(["replay", "--rules", str(ROOT / "rules"), "--from", str(alerts)]) == 2
    assert f"{alerts}:2:" in capsys.readouterr().err
    assert main(["replay", "--rules", str(tmp_path / "nope"), "--from", str(alerts)]) == 2
    assert main(["replay", "--rules", str(ROOT / "rules"), "--since", "yesterday",
                 "--from", str(alerts)]) == 2


def test_since_takes_times_and_durations() -> None:
    """--since accepts RFC 3339 and 30m/24h/7d."""
    start = parse_since("2026-11-23T05:00:00Z")
    assert start is not None
    assert parse_since("2h", now=start) == parse_since("2026-11-23T03:00:00Z")


async def test_store_replay_compares_with_what_was_done(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
        database: str, rules_dir: Path, tmp_path: Path) -> None:
    """Over the recorded alerts, the same table differs in nothing and the changed one in
    exactly the changed level and the lost match; replay calls nothing."""
    daemon = await make_daemon()
    for body in (payload(alert("LedgerInvariantViolation", "BTC-USD")),
                 payload(alert("PostgresFailover")),
                 payload(alert("LedgerInvariantViolation", "BTC-USD", fingerprint="again",
                               starts_at="2026-11-23T05:50:00Z")),
                 payload(alert("SplitBrainSuspected", "ETH-USD"))):
        await post_alerts(http, daemon, body)
        await idle(daemon)
    await daemon.shutdown()  # so that nothing else writes while replay reads
    calls = len(exchange.state.calls)
    conn = await asyncpg.connect(database)
    try:
        same = await from_store(load_table(rules_dir, []), conn, None)
        changed = await from_store(load_table(candidate(tmp_path), []), conn, None)
        seq = await conn.fetchval("SELECT max(seq) FROM action_log")
    finally:
        await conn.close()
    assert same.alerts == 4
    assert same.changed == []
    assert [a.ref for a in changed.changed] == ["inbox 1", "inbox 2"]
    assert [a.differences for a in changed.changed] == [EXPECTED[:1], EXPECTED[1:]]
    assert len(exchange.state.calls) == calls
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT max(seq) FROM action_log") == seq
    finally:
        await conn.close()


async def test_store_replay_meets_the_failures_of_the_time(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
        database: str, rules_dir: Path) -> None:
    """A call that failed then fails in the replay too, so the same table's escalation is
    not reported as new; a different escalation is reported as a level change."""
    daemon = await make_daemon()
    exchange.state.faults = Faults(fail_next=1, fail_status=400)
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "SOL-USD")))
    await idle(daemon)
    assert exchange.state.global_mode == "SOFT_HALT"
    (rules_dir / "spot-exchange.yaml").write_text(
        (rules_dir / "spot-exchange.yaml").read_text().replace(
            "    steps:\n      - {control: symbol-mode, level: HARD_HALT}\n"
            "    on_failure: {control: global-mode, level: SOFT_HALT}",
            "    steps:\n      - {control: symbol-mode, level: HARD_HALT}\n"
            "    on_failure: {control: global-mode, level: HARD_HALT}", 1))
    conn = await asyncpg.connect(database)
    try:
        changed = await from_store(load_table(rules_dir, []), conn, None)
    finally:
        await conn.close()
    [only] = changed.changed
    assert only.differences == [Difference("level", "global-mode", "", ("SOFT_HALT",),
                                           ("HARD_HALT",), ("split-brain",))]


async def test_store_replay_since_keeps_incidents_open_at_the_start(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
        database: str, rules_dir: Path, tmp_path: Path) -> None:
    """With --since, an alert joining an incident opened before the window asks for nothing
    new under the same table; under the changed one only the raised level is new."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("LedgerInvariantViolation", "BTC-USD")))
    await idle(daemon)
    conn = await asyncpg.connect(database)
    try:
        start = await conn.fetchval("SELECT clock_timestamp()")
    finally:
        await conn.close()
    await post_alerts(http, daemon, payload(alert("LedgerInvariantViolation", "BTC-USD",
                                                  fingerprint="later",
                                                  starts_at="2026-11-23T06:00:00Z")))
    await idle(daemon)
    await daemon.shutdown()
    conn = await asyncpg.connect(database)
    try:
        same = await from_store(load_table(rules_dir, []), conn, start)
        changed = await from_store(load_table(candidate(tmp_path), []), conn, start)
    finally:
        await conn.close()
    assert (same.alerts, same.changed) == (1, [])
    [only] = changed.changed
    assert only.ref == "inbox 2"
    assert only.differences == [Difference("new", "symbol-mode", "BTC-USD", (), ("HARD_HALT",),
                                           ("ledger-invariant-violation",))]


async def test_store_replay_follows_releases(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
        database: str, rules_dir: Path) -> None:
    """A release closes the incident, so the same alert afterwards contains again; replay
    follows the release and finds no difference under the same table."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "BTC-USD")))
    await idle(daemon)
    status, _ = await call(http, daemon, "POST", "/v1/controls/symbol-mode/BTC-USD/release",
                           OPERATOR_TOKEN, release_body("CANCEL_ONLY"))
    assert status == 200
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "BTC-USD",
                                                  fingerprint="back",
                                                  starts_at="2026-11-23T06:00:00Z")))
    await idle(daemon)
    assert exchange.state.symbols == {"BTC-USD": "HARD_HALT"}
    await daemon.shutdown()
    conn = await asyncpg.connect(database)
    try:
        report = await from_store(load_table(rules_dir, []), conn, None)
    finally:
        await conn.close()
    assert (report.alerts, report.changed) == (2, [])
