"""Reason and ticket reach the target: where a control's body declares the audit fields,
every call carries the rule id, the incident id and a reason (a person's reason and ticket
on a release); elsewhere, and in paths, they cannot be used."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from responder.errors import RuleError
from responder.rules.loader import load_rules
from tests.conftest import OPERATOR_TOKEN, DaemonFactory, Exchange, idle, post_alerts
from tests.test_controls import call, release_body
from tests.test_engine import alert, payload


async def test_calls_carry_rule_incident_and_reason(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession) -> None:
    """A split-brain's HARD_HALT tells the exchange its rule, incident and why; the release
    that follows tells it the operator's reason and ticket."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("SplitBrainSuspected", "BTC-USD")))
    await idle(daemon)
    [halt] = [c for c in exchange.state.calls if c.applied]
    assert halt.body["mode"] == "HARD_HALT"
    audit = halt.body["audit"]
    assert audit["rule"] == "split-brain" and audit["incident"].isdigit()
    assert f"incident {audit['incident']}" in audit["reason"] and audit["ticket"] == ""
    status, body = await call(http, daemon, "POST", "/v1/controls/symbol-mode/BTC-USD/release",
                              OPERATOR_TOKEN, release_body("CANCEL_ONLY"))
    assert status == 200, body
    released = exchange.state.calls[-1].body["audit"]
    assert released == {"rule": "", "incident": audit["incident"], "ticket": "INC-4711",
                        "reason": "olga: ledger reconciled by finance"}


@pytest.mark.parametrize("field", ["rule", "incident", "reason", "ticket"])
def test_audit_fields_are_refused_in_a_path(tmp_path: Path, field: str) -> None:
    """A free-text audit field in a URL path is a rule error: only the body may carry it."""
    (tmp_path / "r.yaml").write_text(
        "targets:\n  t: {base_url: 'http://127.0.0.1:1'}\n"
        f"controls:\n  c: {{target: t, levels: [A, B], apply: {{path: '/x/{{{field}}}'}}}}\n")
    with pytest.raises(RuleError, match=f"unknown field {{{field}}}"):
        load_rules(tmp_path, env={})
