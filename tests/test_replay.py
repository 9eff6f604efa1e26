"""`responder replay`: a changed rule shows exactly its differences, from a file and from the
store; an unchanged table shows none; nothing is called. Metric samples in a file are
evaluated by each table; from the store, changed metric rules are noted, not guessed."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from examples.exchange import Faults
from responder.cli import main
from responder.daemon import Daemon
from responder.engine.thresholds import Evaluator
from responder.replay.command import from_file, from_store, load_table, parse_since
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
    # No rule matches the SEV1 any more, so the unmatched policy takes it (and pages).
    Difference("matched", before=("postgres-failover",), after=("unmatched",)),
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
                        tuple(d["after"]), tuple(d["rules"]), d["status"])
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
        # No tenant label: the tenant is unknown, so the mildest global step (issue 16, 7).
        Difference("new", "privileged-retries", "", (), ("PAUSED",),
                   ("edge-tenant-mismatch",))]]


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
    assert exchange.state.global_mode == "HARD_HALT"
    storm = "    storm: {max_incidents: 20, step: {control: global-mode, level: HARD_HALT}}"
    (rules_dir / "spot-exchange.yaml").write_text(
        (rules_dir / "spot-exchange.yaml").read_text().replace(
            f"    on_failure: {{control: global-mode, level: HARD_HALT}}\n{storm}",
            f"    on_failure: {{control: global-mode, level: SOFT_HALT}}\n{storm}", 1))
    conn = await asyncpg.connect(database)
    try:
        changed = await from_store(load_table(rules_dir, []), conn, None)
    finally:
        await conn.close()
    [only] = changed.changed
    assert only.differences == [Difference("level", "global-mode", "", ("HARD_HALT",),
                                           ("SOFT_HALT",), ("split-brain",))]


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


# Metric samples: settlement lag every 30 s, above T2 (30) from t=30 s and peaking at 40.
LAG = "settlement_lag_p99"
T0 = 1_795_000_000  # 2026-11-18T11:06:40Z
LAG_VALUES = [10, 35, 40, 40, 40, 40, 40, 15]


def lag_samples(tmp_path: Path) -> Path:
    """JSON lines: the samples in the topic's three shapes, with an alert in between."""
    lines: list[object] = []
    for i, value in enumerate(LAG_VALUES):
        sample = {"name": LAG, "labels": {"venue": "main"}, "value": value, "ts": T0 + 30 * i}
        lines.append(sample if i % 3 == 0 else [sample] if i % 3 == 1 else {"samples": [sample]})
    lines.insert(2, ALERTS[1])  # samples.jsonl:3, an alert no metric rule matches
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def edited(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """The shipped rules with one edit to settlement-lag.yaml."""
    rules = tmp_path / name
    shutil.copytree(ROOT / "rules", rules)
    path = rules / "settlement-lag.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return rules


THRESHOLD_50 = ("threshold: 30        # T2", "threshold: 50        # T2")
FOR_2M = ("for: 1m", "for: 2m")
THROTTLE = "settlement-lag-throttle"


def test_a_raised_threshold_loses_exactly_the_throttle(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """T2 raised from 30 to 50 over samples peaking at 40: the throttle the baseline asked
    at the sample where it fired is missing, and nothing else differs."""
    rules = edited(tmp_path, "t2-50", *THRESHOLD_50)
    args = ["replay", "--rules", str(rules), "--from", str(lag_samples(tmp_path)),
            "--baseline", str(ROOT / "rules")]
    assert main([*args, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["alerts"], report["samples"], report["notes"]) == (1, 8, [])
    [changed] = report["changed"]
    # Above 30 from t=30 s, for 1m: the baseline fires at t=90 s, line 5 of the file.
    assert (changed["ref"], changed["at"], changed["alertname"], changed["status"]) == (
        "samples.jsonl:5", "2026-11-18T11:08:10Z", "SettlementLagHigh", "firing")
    assert changed["sample"] == 'settlement_lag_p99{venue="main"} = 40'
    assert as_differences([changed]) == [[
        Difference("raised", before=("firing",), rules=(THROTTLE,), status="firing"),
        Difference("missing", "order-intake", "", ("THROTTLED",), (), (THROTTLE,))]]
    assert main(args) == 1
    assert capsys.readouterr().out.splitlines()[1:] == [
        "samples.jsonl:5  2026-11-18T11:08:10Z  SettlementLagHigh {venue=main}  firing,"
        ' from settlement_lag_p99{venue="main"} = 40',
        f"  raised   firing only under the baseline  ({THROTTLE})",
        f"  missing  order-intake[-] -> THROTTLED  ({THROTTLE})",
        "1 alerts and 8 samples replayed, 1 with differences: 0 new, 1 missing, 0 level,"
        " 0 matched, 1 raised, 0 when"]


def test_a_longer_for_fires_later_with_the_same_actions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`for` 1m -> 2m: the same alert fires a minute later, at a named sample, and asks
    for the same throttle; the resolve is unchanged."""
    rules = edited(tmp_path, "for-2m", *FOR_2M)
    args = ["replay", "--rules", str(rules), "--from", str(lag_samples(tmp_path)),
            "--baseline", str(ROOT / "rules")]
    assert main([*args, "--json"]) == 1
    [changed] = json.loads(capsys.readouterr().out)["changed"]
    assert (changed["ref"], changed["at"]) == ("samples.jsonl:7", "2026-11-18T11:09:10Z")
    assert as_differences([changed]) == [[Difference(
        "when", before=("2026-11-18T11:08:10Z", "samples.jsonl:5"),
        after=("2026-11-18T11:09:10Z",), rules=(THROTTLE,), status="firing")]]
    assert main(args) == 1
    assert (f"  when     firing 60s later: at 2026-11-18T11:09:10Z instead of"
            f" 2026-11-18T11:08:10Z (samples.jsonl:5)  ({THROTTLE})"
            in capsys.readouterr().out)


def test_a_lower_threshold_raises_a_new_alert_and_its_actions(tmp_path: Path) -> None:
    """T3 lowered below the peak: the soft-halt is raised only under the candidate, with
    its action new; the throttle is unchanged."""
    env = "\n      threshold_env: RESPONDER_SETTLEMENT_T3_S\n"
    rules = edited(tmp_path, "t3-35", f"threshold: 120       # T3{env}      clear: 90",
                   f"threshold: 35        # T3{env}      clear: 30")
    report = from_file(load_table(rules, []), load_table(ROOT / "rules", []),
                       lag_samples(tmp_path), None)
    [changed] = report.changed
    assert changed.alertname == "SettlementLagCritical"
    # Above 35 from t=60 s, for 30s: fires at t=90 s as well.
    assert changed.ref == "samples.jsonl:5"
    assert changed.differences == [
        Difference("raised", after=("firing",), rules=("settlement-lag-halt",),
                   status="firing"),
        Difference("new", "global-mode", "", (), ("SOFT_HALT",), ("settlement-lag-halt",))]


def test_the_same_table_over_samples_differs_in_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Samples as one {"samples": [...]} document under an unchanged table: exit 0."""
    document = tmp_path / "batch.json"
    document.write_text(json.dumps({"samples": [
        {"name": LAG, "labels": {"venue": "main"}, "value": v, "ts": T0 + 30 * i}
        for i, v in enumerate(LAG_VALUES)]}))
    assert main(["replay", "--rules", str(ROOT / "rules"), "--from", str(document),
                 "--baseline", str(ROOT / "rules")]) == 0
    assert "0 alerts and 8 samples replayed, 0 with differences" in capsys.readouterr().out
    # The same batch under the raised threshold names the sample by its index in the batch.
    report = from_file(load_table(edited(tmp_path, "t2", *THRESHOLD_50), []),
                       load_table(ROOT / "rules", []), document, None)
    assert [a.ref for a in report.changed] == ["batch.json:1#3"]


def test_a_bad_sample_is_an_error_naming_line_and_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sample the metrics topic would dead-letter (ts in milliseconds) stops the replay
    with file:line and the field, exit 2."""
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps({"name": LAG, "value": 1, "ts": T0}) + "\n"
                    + json.dumps({"samples": [{"name": LAG, "value": 1, "ts": T0 * 1000}]}))
    assert main(["replay", "--rules", str(ROOT / "rules"), "--from", str(path)]) == 2
    assert f"{path}:2: samples.0.ts: must be Unix seconds" in capsys.readouterr().err


def test_a_changed_metric_rule_without_samples_is_noted(tmp_path: Path) -> None:
    """A file of alerts only cannot evaluate a changed threshold: a note says so."""
    alerts = tmp_path / "alerts.json"
    alerts.write_text(json.dumps(ALERTS))
    report = from_file(load_table(edited(tmp_path, "t2", *THRESHOLD_50), []),
                       load_table(ROOT / "rules", []), alerts, None)
    assert report.changed == []
    [note] = report.notes
    assert note.startswith(f"metric rule {THROTTLE} changed (settlement_lag_p99{{}} > 30 for"
                           " 60s (clears at 20) -> settlement_lag_p99{} > 50 for 60s")
    assert "holds no settlement_lag_p99 samples" in note


def test_a_lower_clear_resolves_later_even_when_the_series_goes_stale(tmp_path: Path) -> None:
    """`clear` 20 -> 10: the baseline resolves at the sample of 15; under the candidate the
    series stays firing until it has been silent for the stale time, and the report says
    it went stale rather than quoting the other series' sample that moved time on."""
    points = [("a", v, 30 * i) for i, v in enumerate([35, 40, 40, 40, 15])]
    points += [("b", 5, 150 + 60 * i) for i in range(1, 8)]
    path = tmp_path / "stale.jsonl"
    path.write_text("\n".join(json.dumps({"name": LAG, "labels": {"venue": venue},
                                           "value": v, "ts": T0 + at})
                              for venue, v, at in points))
    rules = edited(tmp_path, "clear-10", "clear: 20", "clear: 10")
    report = from_file(load_table(rules, []), load_table(ROOT / "rules", []), path, None)
    [changed] = report.changed
    # Venue a's last sample is at 120 s; the sweep (every 75 s of sample time or more) at
    # venue b's sample of 450 s (line 10) is the first to find it silent for over 300 s.
    assert (changed.ref, changed.status) == ("stale.jsonl:10", "resolved")
    assert changed.sample == ('settlement_lag_p99{venue="a"} gone stale'
                              ' (last sample 2026-11-18T11:08:40.000000Z)')
    assert changed.differences == [Difference(
        "when", before=("2026-11-18T11:08:40Z", "stale.jsonl:5"),
        after=("2026-11-18T11:14:10Z",), rules=(THROTTLE,), status="resolved")]


async def record_lag(daemon: Daemon, values: Sequence[float]) -> None:
    """Evaluate samples as the metrics intake does and record the alerts they raise."""
    assert daemon.state is not None
    evaluator = Evaluator(daemon.state.rules, max_series=10, stale_after_s=300,
                          max_future_s=math.inf)
    evaluator.observe((LAG, {"venue": "main"}, v, T0 + 30 * i) for i, v in enumerate(values))
    alerts = evaluator.take()
    assert [a.status for a in alerts] == ["firing", "resolved"]
    await daemon.state.pipeline.record(alerts)
    await idle(daemon)


async def test_store_replay_notes_a_changed_metric_rule_and_replays_unchanged_ones(
        make_daemon: DaemonFactory, exchange: Exchange, database: str, rules_dir: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Recorded internal alerts are replayed where the candidate's condition is the one
    they were raised under (a changed step shows), and left out with a note where it
    changed: the store has no samples to re-evaluate."""
    daemon = await make_daemon()
    await record_lag(daemon, LAG_VALUES)
    assert exchange.state.order_intake == "THROTTLED"
    await daemon.shutdown()
    in_force = load_table(rules_dir, [])
    closed = edited(tmp_path, "closed", "{control: order-intake, level: THROTTLED}",
                    "{control: order-intake, level: CLOSED}")
    conn = await asyncpg.connect(database)
    try:
        same = await from_store(in_force, conn, None, in_force)
        threshold = await from_store(load_table(edited(tmp_path, "t2", *THRESHOLD_50), []),
                                     conn, None, in_force)
        steps = await from_store(load_table(closed, []), conn, None, in_force)
    finally:
        await conn.close()
    assert (same.alerts, same.changed, same.notes) == (2, [], [])
    assert (threshold.alerts, threshold.changed) == (0, [])
    [note] = threshold.notes
    assert note.startswith(f"metric rule {THROTTLE} changed (settlement_lag_p99{{}} > 30")
    assert "2 of its recorded alerts not replayed" in note
    assert "--from FILE" in note
    [only] = steps.changed
    assert (only.ref, only.alertname) == ("inbox 1", "SettlementLagHigh")
    assert only.differences == [Difference("level", "order-intake", "", ("THROTTLED",),
                                           ("CLOSED",), (THROTTLE,))]
    assert steps.notes == []
    # The command says the same, and a change it cannot evaluate does not exit 0.
    monkeypatch.setenv("RESPONDER_DATABASE_URL", database)
    monkeypatch.setenv("RESPONDER_RULES_DIR", str(rules_dir))
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["replay", "--rules", str(tmp_path / "t2")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith(f"note: metric rule {THROTTLE} changed (")
    assert out[2].startswith("0 alerts replayed, 0 with differences")
    # Without the table in force, the recorded alerts still tell the condition changed.
    monkeypatch.setenv("RESPONDER_RULES_DIR", str(tmp_path / "nowhere"))
    assert await asyncio.to_thread(main, ["replay", "--rules", str(tmp_path / "t2")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        f"note: metric rule {THROTTLE} changed (recorded under settlement_lag_p99{{}} > 30"
        " for 60s (clears at 20) -> settlement_lag_p99{} > 50 for 60s (clears at 20)): the"
        " store keeps no samples, so a store replay cannot show when it would fire; 2 of its"
        " recorded alerts not replayed. Replay the samples with --from FILE.")
    assert out[2].startswith(f"note: the configured rules ({tmp_path / 'nowhere'}) do not load")
