"""A batch's decisions as the rows the recording statement writes (store/intake_sql.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from responder.engine.planner import Decision, PlannedStep
from responder.engine.record_job import AlertBatch, Prepared
from responder.model import Alert
from responder.store.intake_sql import (
    DecisionRow,
    InboxRow,
    PlannedStepRow,
    Recording,
)
from responder.store.locks import key_name
from responder.store.steps import NewStep


class Plan:
    """The decisions for every alert of a batch, and the steps they ask for in order."""

    def __init__(self, owners: dict[str, tuple[int, Alert]],
                 jobs: Sequence[AlertBatch]) -> None:
        self.owners = owners
        self.alerts = [a for _, a in owners.values()]
        self.prepared: dict[str, Prepared] = {key: jobs[j].prepared[key]
                                               for key, (j, _) in owners.items()}
        self.decisions = {key: p.decisions for key, p in self.prepared.items()}
        self.cids = {key: jobs[j].correlation_id for key, (j, _) in owners.items()}
        self.steps: list[tuple[str, Decision, PlannedStep, str]] = []
        self.step_index: dict[tuple[str, int], int] = {}  # (dedup key, id(planned)) -> ord
        for key, decisions in self.decisions.items():
            for d in decisions:
                if not d.acts:
                    continue
                for p in d.steps:
                    self.step_index[(key, id(p))] = len(self.steps)
                    self.steps.append((key, d, p, f"responder-{uuid.uuid4()}"))

    def lock_names(self) -> list[str]:
        """The keys of the batch's steps, as their key locks name them, in lock order."""
        return sorted({key_name(p.step.control.name, p.key) for _, _, p, _ in self.steps})

    def alert_states(self, fresh: Sequence[str]) -> list[list[object]]:
        """(rule, scope, fingerprint, firing) of each new alert's decisions, in order: what
        ALERTS_SQL needs to tell which incidents still have an alert firing."""
        states: list[list[object]] = [[], [], [], []]
        for key in fresh:
            alert = self.owners[key][1]
            for d in self.decisions[key]:
                for column, value in zip(states, (d.rule.id, d.scope, alert.fingerprint,
                                                  d.action != "resolve"), strict=True):
                    column.append(value)
        return states

    def recording(self, rules_hash: str) -> Recording:
        """The rows RECORD_SQL writes for this plan."""
        out = Recording(rules_hash)
        for x in self.alerts:
            out.inbox.append(InboxRow(
                dedup_key=x.dedup_key, source=x.source, fingerprint=x.fingerprint,
                status=x.status, starts_at=x.starts_at,
                alert=self.prepared[x.dedup_key].alert_json, group_key=x.group_key,
                truncated_alerts=x.truncated_alerts, correlation_id=self.cids[x.dedup_key]))
        for key, decisions in self.decisions.items():
            for d in decisions:
                out.decisions.append(DecisionRow(
                    dedup_key=key, rule_id=d.rule.id, scope=d.scope, severity=d.rule.severity,
                    action=d.action, correlation_id=self.cids[key]))
        for key, d, p, idem in self.steps:
            s = new_step(0, d.rule.id, p)
            out.steps.append(PlannedStepRow(
                dedup_key=key, rule_id=d.rule.id, scope=d.scope, kind=s.kind,
                position=s.position, control=s.control, key=s.key, level=s.level,
                rank=s.rank, escalate_control=s.escalate_control,
                escalate_key=s.escalate_key, escalate_level=s.escalate_level,
                idempotency_key=idem, correlation_id=self.cids[key]))
        return out


def new_step(incident_id: int, rule_id: str, planned: PlannedStep,
             correlation_id: str | None = None) -> NewStep:
    esc_control = esc_key = esc_level = None
    if planned.escalation is not None:
        esc_step, esc_key = planned.escalation
        esc_control, esc_level = esc_step.control.name, esc_step.level
    return NewStep(incident_id, rule_id, planned.kind, planned.position,
                   planned.step.control.name, planned.key, planned.step.level, planned.rank,
                   esc_control, esc_key, esc_level, correlation_id)
