"""Metric rules in the rule table: the shape, hysteresis validation with file:line, and
that internal alerts match only their own rule."""

from __future__ import annotations

from pathlib import Path

from responder.rules.loader import load_rules
from tests.test_rules import ENV, ROOT, problems, write

METRIC_RULE = """\
rules:
  - id: lag
    severity: sev2
    metric:
      name: settlement_lag_p99
      match: ['venue=~"main|backup"']
      op: ">"
      threshold: 30
      clear: {clear}
      for: {for_}
    steps: [{{control: global, level: SOFT_HALT}}]
    on_failure: {{control: global, level: SOFT_HALT}}
"""


def test_metric_rule_compiles(tmp_path: Path) -> None:
    """A metric rule compiles its condition: durations parsed, clear kept, alertname = id."""
    table = load_rules(write(tmp_path, METRIC_RULE.format(clear=20, for_="1m30s")), env=ENV)
    [rule] = table.rules
    assert rule.metric is not None
    assert (rule.metric.for_s, rule.metric.clear, rule.metric.alertname) == (90.0, 20.0, "lag")
    assert rule.metric.selects({"venue": "main"}) and not rule.metric.selects({"venue": "x"})
    assert table.match({"alertname": "lag"}, "metrics") == [rule]
    assert table.match({"alertname": "lag"}) == []


def test_clear_on_the_wrong_side_is_refused_with_its_line(tmp_path: Path) -> None:
    """clear above a '>' threshold would never clear first: refused at the metric's line."""
    found = problems(write(tmp_path, METRIC_RULE.format(clear=40, for_="1m")))
    assert len(found) == 1
    assert found[0].endswith("rules.yaml:4: rules.0.metric: Value error, clear (40) must be"
                             " at or below the threshold (30) for >"), found


def test_bad_duration_and_matcher_are_refused(tmp_path: Path) -> None:
    """A malformed `for` and a malformed matcher each name their file and line."""
    text = METRIC_RULE.format(clear=20, for_="soon").replace('venue=~"main|backup"', "venue~x")
    found = problems(write(tmp_path, text))
    assert any(":10: rules.0.metric.for: Value error, not a duration" in p for p in found), found
    text = METRIC_RULE.format(clear=20, for_="1m").replace('venue=~"main|backup"', "venue~x")
    found = problems(write(tmp_path, text))
    assert any("rules.yaml:6: not a matcher" in p for p in found), found


def test_a_rule_is_alert_or_metric(tmp_path: Path) -> None:
    """A rule with neither matchers nor a metric, or with both, is refused."""
    neither = "rules:\n  - {id: x, severity: sev2}\n"
    assert any("needs match" in p for p in problems(write(tmp_path, neither)))
    both = METRIC_RULE.format(clear=20, for_="1m").replace("    severity: sev2\n",
                                                           "    severity: sev2\n"
                                                           "    match: ['a=\"b\"']\n")
    assert any("metric.match" in p for p in problems(write(tmp_path, both)))


def test_alertnames_of_metric_rules_are_unique(tmp_path: Path) -> None:
    """Two metric rules raising one alertname would act for each other: refused."""
    one = METRIC_RULE.format(clear=20, for_="1m")
    two = one + one.removeprefix("rules:\n").replace("id: lag", "id: lag2").replace(
        "      for: 1m\n", "      for: 1m\n      alertname: lag\n")
    found = problems(write(tmp_path, two))
    assert any("alertname 'lag' also raised by metric rule 'lag'" in p for p in found), found


def test_shipped_settlement_lag_pack() -> None:
    """The shipped pack throttles above T2 and soft-halts above T3, with T2 < T3, per
    symbol, and globally only when the symbol is unknown."""
    table = load_rules(ROOT / "rules", env=ENV)
    throttle, halt = table.rule("settlement-lag-throttle"), table.rule("settlement-lag-halt")
    assert throttle is not None and halt is not None
    assert throttle.metric is not None and halt.metric is not None
    assert throttle.metric.threshold < halt.metric.threshold
    assert [s.describe() for s in throttle.steps] == ["symbol-order-intake[symbol] -> THROTTLED"]
    assert [s.describe() for s in halt.steps] == ["symbol-mode[symbol] -> SOFT_HALT"]
    assert throttle.on_failure is not None and halt.on_failure is not None
    assert throttle.on_failure.describe() == "order-intake -> THROTTLED"
    assert halt.on_failure.describe() == "global-mode -> SOFT_HALT"
