"""Rule authoring traps are refused at load time with file and line: a keyed escalation
(it runs exactly when the key was refused or unseen), and a target with no URL at all."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.errors import RuleError
from responder.rules.loader import load_rules

TARGET = "targets:\n  t: {base_url: 'http://127.0.0.1:1'}\n"


def _rules(label: str, where: str) -> str:
    return (TARGET + "controls:\n"
            f"  keyed: {{target: t, levels: [A, B], key_label: {label},"
            " apply: {path: '/k/{key}'}}\n"
            "  whole: {target: t, levels: [A, B], apply: {path: /w}}\n"
            "rules:\n"
            "  - id: r\n    severity: sev1\n    match: ['alertname=\"X\"']\n"
            "    steps: [{control: keyed, level: B}]\n"
            + ("    on_failure: {control: whole, level: B}\n" if where != "on_failure" else "")
            + f"    {where}: {{control: keyed, level: B}}\n")


@settings(max_examples=40, deadline=None)
@given(label=st.from_regex(r"^[a-zA-Z_][a-zA-Z0-9_]{0,20}$", fullmatch=True),
       where=st.sampled_from(["on_failure", "on_unknown_scope"]))
def test_a_keyed_escalation_is_refused_with_its_line(label: str, where: str) -> None:
    """Whatever the key label, an on_failure or on_unknown_scope step on a keyed control
    does not load, and the problem names the escalation's line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        text = _rules(label, where)
        path.write_text(text)
        with pytest.raises(RuleError) as caught:
            load_rules(Path(tmp), env={})
    [problem] = caught.value.problems
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith(f"    {where}:"))
    assert problem.line == line
    assert f"{where} must use an unkeyed control" in problem.message


def test_an_unkeyed_escalation_loads(tmp_path: Path) -> None:
    """The same rule with unkeyed escalations is accepted (the check is not over-broad)."""
    text = _rules("symbol", "on_unknown_scope").replace(
        "on_unknown_scope: {control: keyed", "on_unknown_scope: {control: whole")
    (tmp_path / "r.yaml").write_text(text)
    table = load_rules(tmp_path, env={})
    assert table.rules[0].on_unknown_scope is not None


def test_base_url_env_alone_is_enough(tmp_path: Path) -> None:
    """A target may name only base_url_env; unset, it is a problem at its line (or a
    placeholder when only checking rules); a value that is not a URL is refused."""
    (tmp_path / "r.yaml").write_text("targets:\n  t:\n    base_url_env: T_URL\n")
    assert load_rules(tmp_path, env={"T_URL": "http://a:1/x"}).targets["t"].base_url == (
        "http://a:1/x")
    assert load_rules(tmp_path, env={}, resolve_secrets=False).targets["t"].base_url.endswith(
        ".invalid")
    for env in ({}, {"T_URL": "file:///etc/passwd"}):
        with pytest.raises(RuleError) as caught:
            load_rules(tmp_path, env=env)
        [problem] = caught.value.problems
        assert problem.line == 3 and "T_URL" in problem.message
    (tmp_path / "r.yaml").write_text("targets:\n  t: {timeout_s: 1}\n")
    with pytest.raises(RuleError, match="give base_url, base_url_env, or both"):
        load_rules(tmp_path, env={})


def test_settlement_thresholds_are_settings() -> None:
    """T2 and T3 of runbook 3.2 come from the environment when set; a value that is not a
    number, or a clear line on the wrong side, is refused with the rule's file and line."""
    rules = Path(__file__).resolve().parents[1] / "rules"

    def throttle(env: dict[str, str]) -> tuple[float, float]:
        rule = load_rules(rules, env=env, resolve_secrets=False).rule("settlement-lag-throttle")
        assert rule is not None and rule.metric is not None
        return rule.metric.threshold, rule.metric.clear

    assert throttle({}) == (30, 20)
    assert throttle({"RESPONDER_SETTLEMENT_T2_S": "45",
                     "RESPONDER_SETTLEMENT_T2_CLEAR_S": "40"}) == (45, 40)
    for env, why in (({"RESPONDER_SETTLEMENT_T2_S": "soon"}, "not a finite number"),
                     ({"RESPONDER_SETTLEMENT_T2_S": "15"}, "wrong side of the threshold")):
        with pytest.raises(RuleError, match=why) as caught:
            load_rules(rules, env=env, resolve_secrets=False)
        [problem] = caught.value.problems
        assert problem.file.endswith("settlement-lag.yaml") and problem.line > 1
