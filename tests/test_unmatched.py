"""Never silent: an alert that no rule matches is counted, logged at warning, and, when it
looks like a SEV1, opens an `unmatched` incident that pages, shows in the incident list and
fires one of responder's own alerts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from responder.daemon import Daemon
from responder.engine.planner import decide
from responder.engine.unmatched import MAX_ALERTNAMES, OTHER, count_unmatched
from responder.errors import RuleError
from responder.metrics import Metrics
from responder.model import Alert
from responder.rules.loader import load_rules
from responder.rules.table import RuleTable
from tests.conftest import (
    ROOT,
    VIEWER_TOKEN,
    DaemonFactory,
    Exchange,
    idle,
    post_alerts,
    url,
    wait_for,
)
from tests.test_engine import alert, payload
from tests.test_packs_daemon import pages
from tests.webpage import Browser


def unmatched_count(daemon: Daemon, alertname: str, sev1_like: str) -> float:
    value = daemon.metrics.registry.get_sample_value("responder_alerts_unmatched_total",
                                      {"alertname": alertname, "sev1_like": sev1_like})
    return float(value or 0.0)


async def test_a_sev1_that_matches_nothing_is_counted_paged_and_listed(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    """A SEV1 (the runbook's spelling) no rule matches is counted by alertname, logged at
    warning, pages once through the unmatched policy and is listed on /v1 and the web page;
    an ordinary warning is only counted and logged."""
    pager = tmp_path / "pages"
    daemon = await make_daemon(sinks=[
        {"name": "pager", "kind": "file", "dir": str(pager), "bundles": False, "pages": True}])
    with capture_logs() as logs:
        status, _ = await post_alerts(http, daemon, payload(
            alert("OrderBookCorrupted", "BTC-USD", severity="SEV1"),
            alert("DiskAlmostFull", severity="warning")))
        assert status == 200
        await idle(daemon)
        await wait_for(lambda: bool(pages(pager)), what="a page for the unmatched SEV1")
    assert exchange.state.calls == []
    assert unmatched_count(daemon, "OrderBookCorrupted", "true") == 1
    assert unmatched_count(daemon, "DiskAlmostFull", "false") == 1
    warned = [e for e in logs if e["event"] == "alert matched no rule"]
    assert {(e["log_level"], e["sev1_like"], e["incident"]) for e in warned} == {
        ("warning", True, True), ("warning", False, False)}
    [page] = pages(pager)
    assert page["reason"] == "opened" and "unmatched" in page["summary"]
    async with http.get(url(daemon, f"/v1/incidents/{page['incident_id']}"),
                        headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}) as resp:
        found = await resp.json()
    assert found["incident"]["rule_id"] == "unmatched"
    assert found["incident"]["scope"] == "alertname=OrderBookCorrupted"
    browser = Browser(daemon)
    try:
        await browser.login(VIEWER_TOKEN)
        status, html = await browser.get("/")
    finally:
        await browser.close()
    assert status == 200 and "unmatched" in html and "OrderBookCorrupted" in html
    if shutil.which("promtool") is not None:
        own_alert_fires_on(daemon, tmp_path)


def own_alert_fires_on(daemon: Daemon, tmp_path: Path) -> None:
    """ResponderSev1Unmatched fires on the series this daemon exports, and only on the
    SEV1-looking one (promtool's unit test, fed the daemon's own exposition)."""
    text = generate_latest(daemon.metrics.registry).decode()
    series = [(s.labels, s.value) for family in text_string_to_metric_families(text)
              for s in family.samples if s.name == "responder_alerts_unmatched_total"]
    assert len(series) == 2, series
    inputs = [{"series": "responder_alerts_unmatched_total{"
                         + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
                         + ',instance="r1"}', "values": f"_ {value:g} {value:g}"}
              for labels, value in series]
    (tmp_path / "own.test.yml").write_text(json.dumps({
        "rule_files": [str(ROOT / "deploy" / "responder-alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs, "alert_rule_test": [{
            "eval_time": "2m", "alertname": "ResponderSev1Unmatched",
            "exp_alerts": [{"exp_labels": {"severity": "sev1", "instance": "r1",
                                           "unmatched": "OrderBookCorrupted"},
                            "exp_annotations": {"summary": "alert OrderBookCorrupted looks"
                                                " like a SEV1 and matched no rule: nothing"
                                                " was contained"}}]}]}]}))
    result = subprocess.run(["promtool", "test", "rules", str(tmp_path / "own.test.yml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unmatched_policy_is_declared_once_and_reserves_its_rule_id(tmp_path: Path) -> None:
    """A second `unmatched:` policy, an empty matcher group or a rule named `unmatched` is a
    rule error naming the file and line."""
    (tmp_path / "a.yaml").write_text(
        'unmatched:\n  sev1_when: [\'severity="sev1"\']\n'
        'rules:\n  - {id: unmatched, severity: sev2, match: [\'alertname="X"\']}\n')
    (tmp_path / "b.yaml").write_text('unmatched:\n  sev1_when: ["{}"]\n')
    with pytest.raises(RuleError) as caught:
        load_rules(tmp_path, env={})
    found = {(Path(p.file).name, p.line, p.message.split(":")[0]) for p in caught.value.problems}
    assert ("a.yaml", 4, "rule id 'unmatched' is reserved for the unmatched policy") in found
    assert any(name == "b.yaml" and "also declared" in msg for name, _, msg in found), found


def test_an_unmatched_alert_metric_keeps_its_labels_bounded() -> None:
    """Past the cap of distinct alertnames, new names are counted under one label value."""
    metrics = Metrics()
    table = RuleTable({}, {}, (), "h", ())
    for i in range(MAX_ALERTNAMES + 5):
        count_unmatched(metrics, Alert(source="t", fingerprint=str(i), status="firing",
                                       labels={"alertname": f"A{i}"}, annotations={},
                                       starts_at="2026-01-01T00:00:00Z"), table, False)
    assert metrics.registry.get_sample_value(
        "responder_alerts_unmatched_total", {"alertname": OTHER, "sev1_like": "false"}) == 5
    assert len(metrics.unmatched_names) == MAX_ALERTNAMES + 1


SHIPPED = load_rules(Path(__file__).resolve().parents[1] / "rules", env={},
                     resolve_secrets=False, packs=["all"])
SEV1_SPELLINGS = st.sampled_from(["sev1", "critical", "page", "p1", "sev-1", "emergency"]).flatmap(
    lambda word: st.tuples(*(st.sampled_from([c.lower(), c.upper()]) for c in word)).map(
        "".join))


def _alert(labels: dict[str, str]) -> Alert:
    return Alert(source="t", fingerprint="f", status="firing", labels=labels, annotations={},
                 starts_at="2026-01-01T00:00:00Z")


@settings(max_examples=200, deadline=None)
@given(severity=st.one_of(st.none(), st.text(max_size=20)))
def test_a_ledger_violation_matches_whatever_its_severity(severity: str | None) -> None:
    """LedgerInvariantViolation is contained whatever its severity label says, or without one."""
    labels = {"alertname": "LedgerInvariantViolation", "symbol": "BTC-USD"}
    if severity is not None:
        labels["severity"] = severity
    assert [d.rule.id for d in decide(_alert(labels), SHIPPED)] == ["ledger-invariant-violation"]


@settings(max_examples=200, deadline=None)
@given(name=st.from_regex(r"^[A-Z][A-Za-z0-9_]{2,30}$", fullmatch=True),
       severity=SEV1_SPELLINGS)
def test_an_unmatched_sev1_is_never_silent(name: str, severity: str) -> None:
    """Any alert no rule matches whose severity is a SEV1 spelling, in any case, goes to the
    unmatched policy: an incident that pages."""
    labels = {"alertname": name, "severity": severity}
    rules = [r for r in SHIPPED.rules if r.metric is None and r.matches(labels)]
    assume(not rules)
    [decision] = decide(_alert(labels), SHIPPED)
    assert decision.rule.id == "unmatched" and decision.rule.page
    assert decision.scope == f"alertname={name}"
