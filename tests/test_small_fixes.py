"""Small lifecycle defects: one-line CLI errors, fixture lines, the exact request recorded."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from responder.cli import main
from tests.conftest import DaemonFactory, Exchange, fixture_bytes, idle, post_alerts, query

ROOT = Path(__file__).resolve().parent.parent


def test_verify_of_a_missing_file_is_one_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`evidence verify` of a file that is not there prints one line, not a traceback."""
    missing = tmp_path / "incident-1-v1.tar.gz"
    assert main(["evidence", "verify", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(missing) in err and "Traceback" not in err


def test_a_case_without_expect_names_its_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A fixture case missing `expect` is reported at the case's line, not line 0."""
    fixture = tmp_path / "no-expect.test.yaml"
    fixture.write_text(f"""\
rules_dir: {ROOT / "rules"}
tests:
  - name: fine
    alerts:
      - labels: {{alertname: LedgerInvariantViolation, severity: sev1, symbol: BTC-USD}}
    expect: {{}}
  - name: forgot
    alerts:
      - labels: {{alertname: LedgerInvariantViolation, severity: sev1, symbol: BTC-USD}}
""")
    assert main(["test-rules", str(fixture)]) == 2
    err = capsys.readouterr().err
    assert f"fixture {fixture}:7: tests.1.expect: Field required" in err


async def test_intent_records_the_request_body(make_daemon: DaemonFactory,
                                               http: aiohttp.ClientSession,
                                               exchange: Exchange, database: str) -> None:
    """An intent record holds the exact request: method, target, path and the body the
    target then received."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    rows = await query(database, "SELECT body FROM action_log WHERE kind = 'intent'"
                                 " ORDER BY seq")
    requests = [json.loads(r["body"])["detail"]["request"] for r in rows]
    assert [(r["method"], r["target"], r["path"]) for r in requests] == [
        ("PUT", "exchange", "/admin/withdrawals"),
        ("PUT", "exchange", "/admin/symbols/BTC-USD/mode")]
    assert requests[0]["body"]["state"] == "HALTED"
    assert requests[1]["body"]["mode"] == "CANCEL_ONLY"
    sent = sorted((c.method, c.path, json.dumps(c.body, sort_keys=True))
                  for c in exchange.state.calls)
    assert sent == sorted((r["method"], r["path"], json.dumps(r["body"], sort_keys=True))
                          for r in requests)
