"""Rule table validation, file:line reporting, level ordering and substitution."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from responder.cli import main
from responder.errors import RuleError
from responder.rules.loader import load_rules

ROOT = Path(__file__).resolve().parent.parent
ENV = {"RESPONDER_EXCHANGE_TOKEN": "t0ken-for-rules"}

BASE = """\
targets:
  ex:
    base_url: http://127.0.0.1:1
    auth: {bearer_token_env: RESPONDER_EXCHANGE_TOKEN}
controls:
  symbol-mode:
    target: ex
    levels: [NORMAL, CANCEL_ONLY, SOFT_HALT, HARD_HALT]
    key_label: symbol
    apply: {method: PUT, path: "/s/{key}", body: {mode: "{level}"}}
  global:
    target: ex
    levels: [NORMAL, SOFT_HALT]
    apply: {path: /g, body: {mode: "{level}"}}
"""


def write(tmp_path: Path, rules: str, base: str = BASE) -> Path:
    (tmp_path / "base.yaml").write_text(base)
    (tmp_path / "rules.yaml").write_text(textwrap.dedent(rules))
    return tmp_path


def problems(tmp_path: Path) -> list[str]:
    with pytest.raises(RuleError) as exc:
        load_rules(tmp_path, env=ENV)
    return [str(p) for p in exc.value.problems]


def test_shipped_rules_load() -> None:
    """The shipped rule table is valid and carries the runbook's alert names."""
    table = load_rules(ROOT / "rules", env=ENV)
    assert {r.id for r in table.rules} >= {"ledger-invariant-violation", "split-brain",
                                          "postgres-failover", "kafka-outage"}
    labels = {"alertname": "LedgerInvariantViolation", "severity": "sev1", "symbol": "BTC-USD"}
    assert [r.id for r in table.match(labels)] == ["ledger-invariant-violation"]
    assert len(table.bundle_hash) == 64


def test_levels_are_ordered() -> None:
    """Levels rank in declaration order, so HARD_HALT outranks CANCEL_ONLY."""
    control = load_rules(ROOT / "rules", env=ENV).controls["symbol-mode"]
    ranks = [control.rank(level) for level in
             ("NORMAL", "CANCEL_ONLY", "SOFT_HALT", "HARD_HALT")]
    assert ranks == sorted(ranks) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="OPEN"):
        control.rank("OPEN")


def test_errors_name_file_and_line(tmp_path: Path) -> None:
    """Unknown controls, bad levels and bad matchers are reported with file and line."""
    write(tmp_path, """\
        rules:
          - id: r1
            severity: sev1
            match: ['alertname="A"']
            steps:
              - {control: nope, level: HALTED}
            on_failure: {control: global, level: SOFT_HALT}
          - id: r2
            severity: sev1
            match: ['alertname=~"("']
            steps:
              - {control: symbol-mode, level: PANIC}
            on_failure: {control: global, level: SOFT_HALT}
        """)
    found = problems(tmp_path)
    rules_file = str(tmp_path / "rules.yaml")
    assert f"{rules_file}:6: unknown control 'nope'" in found
    assert any(p.startswith(f"{rules_file}:10: invalid regex") for p in found)
    assert any(p.startswith(f"{rules_file}:12: level 'PANIC'") for p in found)


def test_schema_errors_name_the_line(tmp_path: Path) -> None:
    """A misspelt field is refused at its own line."""
    write(tmp_path, """\
        rules:
          - id: r1
            severity: sev1
            match: ['alertname="A"']
            stpes: []
        """)
    assert any(p.startswith(f"{tmp_path / 'rules.yaml'}:5: rules.0.stpes") for p in
               problems(tmp_path))


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    """Broken YAML is reported with its line."""
    write(tmp_path, "rules:\n  - id: r1\n    match: [unclosed\n")
    assert any(p.startswith(f"{tmp_path / 'rules.yaml'}:") and "YAML" in p for p in
               problems(tmp_path))


def test_fail_closed_rules_need_an_escalation(tmp_path: Path) -> None:
    """A rule that contains must say what to do when containment fails."""
    write(tmp_path, """\
        rules:
          - id: r1
            severity: sev1
            match: ['alertname="A"']
            steps: [{control: symbol-mode, level: SOFT_HALT}]
        """)
    assert any("no on_failure" in p for p in problems(tmp_path))


def test_only_named_fields_substitute(tmp_path: Path) -> None:
    """Paths and bodies take {key}, {level} and {control} only: no template language."""
    base = BASE.replace('path: /g, body: {mode: "{level}"}',
                        'path: "/g/{labels.x}", body: {mode: "{level.__class__}"}')
    write(tmp_path, "rules: []\n", base=base)
    found = problems(tmp_path)
    assert sum("unknown field" in p for p in found) == 2


def test_key_used_on_unkeyed_control(tmp_path: Path) -> None:
    """{key} on a control without key_label is an error, not an empty path segment."""
    write(tmp_path, "rules: []\n", base=BASE.replace("path: /g,", 'path: "/g/{key}",'))
    assert any("has no key_label" in p for p in problems(tmp_path))


def test_missing_target_secret_is_reported(tmp_path: Path) -> None:
    """A target token that is not in the environment stops the load, naming the variable."""
    write(tmp_path, "rules: []\n")
    with pytest.raises(RuleError, match="RESPONDER_EXCHANGE_TOKEN is not set"):
        load_rules(tmp_path, env={})


def test_render_quotes_the_key() -> None:
    """The key is URL-quoted into the path, the level substituted into the body, and the
    audit fields given (or "" when not) taken as plain text, never as a template."""
    control = load_rules(ROOT / "rules", env=ENV).controls["symbol-mode"]
    empty = {"rule": "", "incident": "", "reason": "", "ticket": ""}
    assert control.render("BTC/USD", "HARD_HALT") == (
        "/admin/symbols/BTC%2FUSD/mode", {"mode": "HARD_HALT", "audit": empty})
    audit = {"rule": "r", "incident": "7", "reason": "{level} {key}", "ticket": "T-1"}
    assert control.render("BTC-USD", "HARD_HALT", audit)[1] == {"mode": "HARD_HALT",
                                                               "audit": audit}


def test_check_rules_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`responder check-rules` exits 0 on the shipped table and 2 with file:line on a bad one."""
    monkeypatch.setenv("RESPONDER_EXCHANGE_TOKEN", "x-token")
    assert main(["check-rules", str(ROOT / "rules")]) == 0
    shipped = len(load_rules(ROOT / "rules", env=ENV).rules)
    assert f"{shipped} rules" in capsys.readouterr().out
    write(tmp_path, "rules:\n  - id: BAD ID\n    severity: sev1\n    match: ['a=\"b\"']\n")
    assert main(["check-rules", str(tmp_path)]) == 2
    assert f"{tmp_path / 'rules.yaml'}:2: rules.0.id" in capsys.readouterr().err
