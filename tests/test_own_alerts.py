"""responder's own alerting rules are valid Prometheus rules and name metrics it exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from responder.metrics import Metrics

RULES = Path(__file__).resolve().parent.parent / "deploy" / "responder-alerts.yml"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian 'prometheus')")
def test_promtool_accepts_the_rules() -> None:
    """`promtool check rules` accepts the shipped file."""
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_name_exported_metrics() -> None:
    """Every responder_* series the rules use is one responder exports."""
    used = set(re.findall(r"\bresponder_[a-z_]+", RULES.read_text()))
    exported = set()
    for metric in Metrics().registry.collect():
        exported.add(f"{metric.name}_total" if metric.type == "counter" else metric.name)
    assert used <= exported, used - exported
