"""responder's own alerts and dashboard: valid for promtool and Grafana's shape, covering what
the on-call team needs, and naming only metrics responder exports, so neither can drift."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

from responder.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "responder-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "responder-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "responder.json"
SCHEMA = ROOT / "docs" / "schemas" / "grafana-dashboard.schema.json"
PROMETHEUS_OWN = {"up"}  # series Prometheus itself writes for every scrape target
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right"}
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool (Debian 'prometheus')")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, strings left out)."""
    expr = re.sub(r"label_values\(\s*([^,()]+?)\s*,[^)]*\)", r"\1", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\boffset\s+[0-9a-z]+", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    return {name for name, call in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", expr)
            if not call and name not in PROMQL_WORDS}


def exported() -> set[str]:
    """Every series name responder's registry can produce."""
    names = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "count", "sum")}
        else:
            names.add(family.name)
    return names


def alert_exprs() -> dict[str, str]:
    data = YAML(typ="safe").load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in data["groups"] for r in g["rules"]}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_exprs() -> list[str]:
    data = dashboard()
    exprs = [t["expr"] for p in data["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in data["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_metric_names_are_found() -> None:
    """The extractor finds metric names and skips functions, labels, strings and keywords."""
    expr = ('sum by (instance) (rate(responder_http_requests_total{route=~"/webhooks/.*",'
            ' code="401"}[5m])) > 0.05 and on(instance) (up == 0)')
    assert metric_names(expr) == {"responder_http_requests_total", "up"}
    assert metric_names("label_values(responder_ready, job)") == {"responder_ready"}


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    """`promtool check rules` accepts the shipped file."""
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    """`promtool test rules`: each alert fires on responder's series and not otherwise."""
    result = subprocess.run(["promtool", "test", "rules", RULE_TESTS.name],
                            cwd=RULE_TESTS.parent, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_name_exported_metrics() -> None:
    """Every metric the alerting rules use is one responder exports (or Prometheus's `up`)."""
    used = set().union(*(metric_names(e) for e in alert_exprs().values()))
    assert "responder_containment_failed_total" in used
    assert used - PROMETHEUS_OWN <= exported(), (used - PROMETHEUS_OWN) - exported()


def test_alerts_cover_what_on_call_needs() -> None:
    """Down or not ready, containment failed, drift, outbox backlog or dead delivery, a
    refused reload, Kafka lag and webhook 401/400 each have an alert."""
    exprs = alert_exprs()
    joined = "\n".join(exprs.values())
    for needle in ("up{", "responder_ready", "responder_containment_failed_total",
                   'responder_drift_total{outcome="corrected"}', "responder_outbox_backlog",
                   'responder_deliveries_total{outcome="dead"}',
                   "responder_rules_last_reload_ok", "responder_kafka_lag",
                   'code="401"', 'code="400"'):
        assert needle in joined, needle


def test_dashboard_matches_its_schema() -> None:
    """The dashboard validates against docs/schemas/grafana-dashboard.schema.json, and a
    panel outside the grid or without a query does not."""
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    data = dashboard()
    assert list(validator.iter_errors(data)) == []
    broken = json.loads(json.dumps(data))
    broken["panels"][0]["gridPos"]["x"] = 30
    del broken["panels"][1]["targets"]
    assert len(list(validator.iter_errors(broken))) == 2


def test_dashboard_panels_are_distinct_and_in_the_grid() -> None:
    """Panel ids are unique and each panel fits in Grafana's 24 columns."""
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in panels)


def test_dashboard_names_exported_metrics() -> None:
    """Every metric the dashboard queries is one responder exports."""
    used = set().union(*(metric_names(e) for e in dashboard_exprs()))
    assert used <= exported(), used - exported()


def test_dashboard_covers_what_on_call_needs() -> None:
    """Intake by source, matches by rule, action outcomes, latency percentiles, controls
    contained, outbox backlog and Kafka lag each have a panel."""
    exprs = "\n".join(dashboard_exprs())
    for needle in ("by (source) (rate(responder_alerts_received_total",
                   "by (rule, action) (rate(responder_rule_matches_total",
                   "by (control, outcome) (rate(responder_actions_total",
                   "histogram_quantile(0.99, sum by (le) (rate(responder_intake_seconds_bucket",
                   "responder_admin_call_seconds_bucket", "responder_controls_contained",
                   "responder_outbox_backlog", "responder_kafka_lag"):
        assert needle in exprs, needle
