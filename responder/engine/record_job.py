"""A batch of alerts to record and what recording it returns, apart from the unit that
records them (engine/recorder.py), so the plan and the entries can read both."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from responder.engine.planner import Decision, decide
from responder.engine.policy import Policy
from responder.metrics import Metrics
from responder.model import Alert
from responder.redaction import Redactor
from responder.rules.table import RuleTable
from responder.store.steps import StepRow


@dataclass
class Recorded:
    """What a batch of alerts turned into: counts, and the steps to execute now."""

    new: int = 0
    redelivered: int = 0
    incidents: set[int] = field(default_factory=set)
    steps: list[StepRow] = field(default_factory=list)
    replayed: bool = False


@dataclass(frozen=True)
class AlertBatch:
    """Alerts to record, with what their recording needs: the data of a RecordAlerts unit
    (engine/recorder.py), which the plan and the entries read."""

    alerts: Sequence[Alert]
    table: RuleTable
    metrics: Metrics
    redactor: Redactor
    policy: Policy = field(default_factory=Policy)
    nonce: tuple[str, str] | None = None
    """(source, event id) of a signed event: recorded with the alerts, refused if seen."""
    correlation_id: str | None = None
    replica: str | None = None
    """Claim a new incident's first step for this replica while recording (None: never)."""
    lease_s: float = 10.0
    prepared: dict[str, Prepared] = field(init=False, repr=False, compare=False)
    """Per alert (by dedup key), what needs no store: worked out when the unit is made,
    in the intake's task, so the writer's one transaction at a time does not wait on it."""

    def __post_init__(self) -> None:
        prepared: dict[str, Prepared] = {}
        for alert in self.alerts:
            if alert.dedup_key not in prepared:
                body = alert.to_json()
                redacted = self.redactor.value(body)
                # "labels" is no secret-named key, so its redacted value is the labels'.
                prepared[alert.dedup_key] = Prepared(
                    decide(alert, self.table, self.policy), json_text(body), redacted,
                    redacted["labels"])
        object.__setattr__(self, "prepared", prepared)


@dataclass(frozen=True)
class Prepared:
    """What an alert's recording needs that the store does not: worked out beforehand."""

    decisions: list[Decision]
    alert_json: str
    redacted: object
    redacted_labels: object


def json_text(body: dict[str, object]) -> str:
    """The alert for its jsonb column (any spelling of the same JSON will do there)."""
    try:
        return orjson.dumps(body).decode()
    except orjson.JSONEncodeError:  # what orjson refuses, such as a lone surrogate
        return json.dumps(body)
