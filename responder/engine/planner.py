"""Decide, without side effects, what one alert asks of the rule table."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from responder.engine.policy import Effect, Policy
from responder.model import Alert
from responder.rules.table import Rule, RuleTable, Step

PREVIEW_CHARS = 80
STORM_SCOPE = "storm"  # the incident a rule's storm step belongs to


@dataclass(frozen=True)
class PlannedStep:
    """A step with its key resolved, and the escalation to run if it fails."""

    kind: Literal["step", "escalation"]
    position: int
    step: Step
    key: str
    escalation: tuple[Step, str] | None

    @property
    def rank(self) -> int:
        return self.step.control.rank(self.step.level)


@dataclass(frozen=True)
class RejectedKey:
    """A label value that may not reach a target: wrong shape, hostile or missing."""

    control: str
    label: str
    value: str


@dataclass(frozen=True)
class Decision:
    """What one matched rule asks for this alert."""

    rule: Rule
    scope: str
    action: Literal["contain", "notify", "resolve"]
    steps: tuple[PlannedStep, ...] = ()
    rejected: tuple[RejectedKey, ...] = ()
    scope_unknown: bool = False
    effect: Effect = "enforce"
    storm: str | None = None
    """Why the blast-radius guard replaced this decision's steps, if it did."""
    storm_scope: str = ""

    @property
    def acts(self) -> bool:
        """True when the steps are to be executed, not only recorded."""
        return self.action == "contain" and self.effect == "enforce"


def preview(value: str) -> str:
    """A bounded, printable rendering of an untrusted value for records and logs."""
    text = repr(value)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."


def scope_of(rule: Rule, alert: Alert) -> str:
    return ",".join(f"{label}={alert.labels.get(label, '')[:128]}"
                    for label in rule.scope_labels())


def _valid_key(step: Step, key: str) -> bool:
    return not step.control.is_keyed or step.control.key_pattern.fullmatch(key) is not None


def _escalation(rule: Rule, step: Step | None, alert: Alert) -> tuple[Step, str] | None:
    if step is None:
        return None
    key = step.key_for(alert.labels)
    return (step, key) if _valid_key(step, key) else None


def decide(alert: Alert, table: RuleTable, policy: Policy | None = None) -> list[Decision]:
    """One decision per matching rule."""
    policy = policy or Policy()
    decisions = []
    for rule in table.match(alert.labels, alert.source):
        scope = scope_of(rule, alert)
        if alert.status == "resolved":
            decisions.append(Decision(rule, scope, "resolve"))
        elif not rule.steps:
            decisions.append(Decision(rule, scope, "notify"))
        else:
            decision = replace(_contain(rule, scope, alert), effect=policy.effect(rule, alert))
            if decision.effect == "enforce" and policy.guard is not None:
                why = policy.guard.admit(rule, scope)
                if why is not None:
                    decision = _storm(rule, scope, why)
            decisions.append(decision)
    return decisions


def _storm(rule: Rule, scope: str, why: str) -> Decision:
    """One storm step for the whole rule in place of per-key steps; paused if it has none."""
    if rule.storm_step is None:
        return Decision(rule, STORM_SCOPE, "contain", effect="paused", storm=why,
                        storm_scope=scope)
    planned = PlannedStep("escalation", 0, rule.storm_step, "", None)
    return Decision(rule, STORM_SCOPE, "contain", (planned,), storm=why, storm_scope=scope)


def _contain(rule: Rule, scope: str, alert: Alert) -> Decision:
    on_failure = _escalation(rule, rule.on_failure, alert)
    steps: list[PlannedStep] = []
    rejected: list[RejectedKey] = []
    for position, step in enumerate(rule.steps):
        key = step.key_for(alert.labels)
        if not _valid_key(step, key):
            assert step.key_label is not None
            rejected.append(RejectedKey(step.control.name, step.key_label, key))
            continue
        steps.append(PlannedStep("step", position, step, key, on_failure))
    # A truncated group hides alerts we will never see: the keys they name are unknown.
    scope_unknown = alert.truncated_alerts > 0 and bool(rule.scope_labels())
    fallback = None
    if scope_unknown:
        fallback = _escalation(rule, rule.on_unknown_scope, alert)
    elif rejected:
        fallback = on_failure
    if fallback is not None:
        step, key = fallback
        steps.append(PlannedStep("escalation", len(rule.steps), step, key, None))
    return Decision(rule, scope, "contain", tuple(steps), tuple(rejected), scope_unknown)
