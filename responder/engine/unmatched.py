"""Alerts that no rule matched: never silent. Each is counted by alertname and logged at
warning; the unmatched policy (``unmatched:`` in a rule file) opens an incident and pages
for one that looks like a SEV1."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from responder.engine.planner import Decision, preview
from responder.metrics import Metrics
from responder.model import Alert
from responder.rules.table import UNMATCHED_RULE, RuleTable

MAX_ALERTNAMES = 200
OTHER = "_other"
"""The alertname label past MAX_ALERTNAMES distinct names, so a sender cannot grow the
metric without bound."""

log = structlog.get_logger("responder.engine")


def is_unmatched(alert: Alert, decisions: Sequence[Decision]) -> bool:
    """True for a firing alert that only the unmatched policy (or nothing) took."""
    return alert.status == "firing" and all(d.rule.id == UNMATCHED_RULE for d in decisions)


def count_unmatched(metrics: Metrics, alert: Alert, table: RuleTable, paged: bool) -> None:
    """Count the alert by alertname (bounded) and log it at warning."""
    name = alert.labels.get("alertname", "")
    sev1_like = paged or table.looks_sev1(alert.labels)
    seen = metrics.unmatched_names
    if name not in seen and len(seen) >= MAX_ALERTNAMES:
        name = OTHER
    seen.add(name)
    metrics.unmatched.labels(name, "true" if sev1_like else "false").inc()
    log.warning("alert matched no rule", alertname=preview(alert.labels.get("alertname", "")),
                severity=preview(alert.labels.get("severity", "")), source=alert.source,
                fingerprint=preview(alert.fingerprint), sev1_like=sev1_like, incident=paged)
