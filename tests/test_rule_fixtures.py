"""`responder test-rules`: shipped packs pass their fixtures; a wrong expectation prints a diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from responder.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_fixtures_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """Every fixture file under rules/tests passes against the shipped rules."""
    files = sorted(str(p) for p in (ROOT / "rules" / "tests").glob("*.yaml"))
    assert files
    assert main(["test-rules", *files]) == 0
    assert " 0 failed" in capsys.readouterr().out


def test_a_wrong_expectation_fails_with_a_diff(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A case expecting HARD_HALT where the rule sets CANCEL_ONLY fails, showing both."""
    fixture = tmp_path / "wrong.test.yaml"
    fixture.write_text(f"""\
rules_dir: {ROOT / "rules"}
tests:
  - name: wrong level
    alerts:
      - labels: {{alertname: LedgerInvariantViolation, severity: sev1, symbol: BTC-USD}}
    expect:
      calls:
        - {{control: withdrawals, level: HALTED}}
        - {{control: symbol-mode, key: BTC-USD, level: HARD_HALT}}
""")
    assert main(["test-rules", str(fixture)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  wrong level" in out
    assert "-call symbol-mode[BTC-USD] -> HARD_HALT" in out
    assert "+call symbol-mode[BTC-USD] -> CANCEL_ONLY" in out
    assert "0 passed, 1 failed" in out
