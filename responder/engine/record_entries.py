"""The action-log entries a recorded batch implies: per alert, what was received and
matched, the incidents opened, each step's intent, and why a rule did not act."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import structlog

from responder.engine import audit
from responder.engine.planner import Decision, PlannedStep, preview
from responder.engine.record_job import AlertBatch, Recorded
from responder.engine.record_plan import Plan, new_step
from responder.engine.unmatched import count_unmatched, is_unmatched
from responder.metrics import Metrics
from responder.model import Alert
from responder.store.actionlog import ChainAppender, Entry
from responder.store.kinds import Kind
from responder.store.steps import Inserted, StepRow, held_entry, intent_entry
from responder.store.types import Row

log = structlog.get_logger("responder.engine")


def bound(hook: Callable[[], None], correlation_id: str | None) -> Callable[[], None]:
    """Run an after-commit hook with its alert's correlation id on every log line: hooks
    run in the writer's task, outside the intake request's context."""

    def run() -> None:
        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            hook()

    return run


class IncidentRace(Exception):
    """Another replica opened an incident after our snapshot; the batch is retried."""


class Outcome:
    """The statement's answer, and the action-log entries it implies, in alert order."""

    def __init__(self, row: Row, plan: Plan) -> None:
        self.plan = plan
        self.inbox = {k: (i, n) for k, i, n in json.loads(row["inbox"])}
        self.incidents = {(r, s): (i, new) for r, s, i, new in json.loads(row["incidents"])}
        self.resolved: dict[tuple[str, str], int] = {}
        self.still_open: dict[tuple[str, str], int] = {}
        self.steps = {ord_ - 1: (inc, held, rank, sid, bool(pre))
                      for ord_, inc, held, rank, sid, pre in json.loads(row["steps"])}
        self.announced: set[int] = set()

    def settle(self, incidents: str) -> None:
        """Which incidents the batch's resolved alerts resolved, and which stay open because
        another of their alerts still fires."""
        for rule_id, scope, incident_id, resolved in json.loads(incidents):
            (self.resolved if resolved else self.still_open)[(rule_id, scope)] = incident_id

    def entries_for(self, chain: ChainAppender, alert: Alert, inbox_id: int,
                    decisions: list[Decision],
                    result: Recorded, job: AlertBatch) -> list[Entry]:
        entries = [Entry(Kind.ALERT_RECEIVED, detail={
            "inbox_id": inbox_id,
            "alert": job.prepared[alert.dedup_key].redacted,
            "matched_rules": [d.rule.id for d in decisions],
        })]
        if is_unmatched(alert, decisions):
            chain.after_commit(functools.partial(count_unmatched, job.metrics, alert, job.table,
                                                 bool(decisions)))
        for d in decisions:
            chain.after_commit(functools.partial(_count_match, job.metrics, d.rule.id,
                                                 d.action))
            if d.action == "resolve":
                resolved = _resolved_entry(alert, d, self.resolved.get((d.rule.id, d.scope)),
                                           self.still_open.get((d.rule.id, d.scope)))
                entries.append(resolved)
                if resolved.incident_id is not None:
                    # Every change to an incident reaches its bundle: seal it again.
                    result.incidents.add(resolved.incident_id)
                continue
            if (d.rule.id, d.scope) not in self.incidents:
                raise IncidentRace(f"incident {d.rule.id} {d.scope} opened concurrently")
            incident_id, is_new = self.incidents[(d.rule.id, d.scope)]
            if is_new and incident_id not in self.announced:
                self.announced.add(incident_id)
                entries.append(Entry(Kind.INCIDENT_OPENED, incident_id=incident_id,
                                     rule_id=d.rule.id,
                                     detail={"scope": job.redactor.text(d.scope),
                                             "severity": d.rule.severity,
                                             "description": d.rule.description}))
            entries.append(Entry(Kind.ALERT_MATCHED, incident_id=incident_id, rule_id=d.rule.id,
                                 detail={"inbox_id": inbox_id, "fingerprint": alert.fingerprint,
                                         "starts_at": alert.starts_at,
                                         "labels": job.prepared[alert.dedup_key].redacted_labels}))
            # A notify-only incident gets its evidence (and any page) like any other.
            result.incidents.add(incident_id)
            if d.action == "notify":
                entries.append(Entry(Kind.NOTIFY_ONLY, incident_id=incident_id, rule_id=d.rule.id,
                                     detail={"fingerprint": alert.fingerprint}))
                continue
            if d.storm is not None:
                entries.append(_storm_entry(d, incident_id, job, chain))
            entries.extend(_warnings(alert, d, incident_id, job, chain))
            if not d.acts:
                entries.extend(_not_acting(d, incident_id, job, chain))
                continue
            for p in d.steps:
                entry = self._step_entry(alert.dedup_key, d, p, incident_id, result)
                if entry is not None:
                    entries.append(entry)
        return entries

    def _step_entry(self, dedup_key: str, d: Decision, p: PlannedStep, incident_id: int,
                    result: Recorded) -> Entry | None:
        index = self.plan.step_index.get((dedup_key, id(p)))
        if index is None or index not in self.steps:
            return None
        _, held_level, held_rank, step_id, preclaimed = self.steps[index]
        _, _, _, idem = self.plan.steps[index]
        wanted = new_step(incident_id, d.rule.id, p)
        row = None
        if step_id is not None:
            row = StepRow(step_id, incident_id, d.rule.id, wanted.kind, wanted.control,
                          wanted.key, wanted.level, wanted.rank, wanted.escalate_control,
                          wanted.escalate_key, wanted.escalate_level, idem,
                          self.plan.cids[dedup_key], preclaimed, held_level)
            result.steps.append(row)
        held = held_level if held_rank is not None and held_rank >= wanted.rank else None
        return step_entry(p, Inserted(wanted, row, held))


def _warnings(alert: Alert, d: Decision, incident_id: int, job: AlertBatch,
              chain: ChainAppender) -> list[Entry]:
    rule, metrics = d.rule, job.metrics
    entries = []
    for rejected in d.rejected:
        # Redact before cutting, so a secret is never left half-visible by the cut.
        shown = preview(job.redactor.text(rejected.value))
        chain.after_commit(functools.partial(_log_rejected, metrics, rule.id, rejected.control,
                                             rejected.label, shown))
        entries.append(Entry(Kind.KEY_REJECTED, incident_id=incident_id, rule_id=rule.id,
                             control=rejected.control,
                             detail={"label": rejected.label, "value": shown}))
    if d.scope_unknown:
        chain.after_commit(functools.partial(_log_truncated, metrics, rule.id, alert))
        entries.append(Entry(Kind.SCOPE_UNKNOWN, incident_id=incident_id, rule_id=rule.id,
                             detail={"group_key": alert.group_key,
                                     "truncated_alerts": alert.truncated_alerts}))
    if d.rejected and not any(s.kind == "escalation" for s in d.steps):
        entries.append(containment_failed(chain, incident_id, rule.id, "no usable escalation",
                                          metrics))
    return entries


def _storm_entry(d: Decision, incident_id: int, job: AlertBatch,
                 chain: ChainAppender) -> Entry:
    action = (f"{d.steps[0].step.describe()} instead" if d.steps
              else "paused: no storm step, nothing done")
    chain.after_commit(functools.partial(
        log.error, "blast-radius guard tripped; page a person", rule=d.rule.id, why=d.storm,
        action=action))
    return Entry(Kind.STORM_GUARD_TRIPPED, incident_id=incident_id, rule_id=d.rule.id,
                 detail={"why": d.storm, "scope": job.redactor.text(d.storm_scope),
                         "action": action})


def _not_acting(d: Decision, incident_id: int, job: AlertBatch,
                chain: ChainAppender) -> list[Entry]:
    """Records for a decision that may not act: what would have been done, and why not."""
    if d.effect == "paused":
        chain.after_commit(functools.partial(
            log.error, "automation paused: alert recorded, nothing done; page a person",
            rule=d.rule.id, incident=incident_id))
    entries = []
    for p in d.steps:
        control = p.step.control
        path, body = control.render(p.key, p.step.level,
                                    audit.automatic(d.rule.id, incident_id, p.kind))
        entries.append(Entry(Kind.WOULD_ACT, incident_id=incident_id, rule_id=d.rule.id,
                             control=control.name, key=p.key,
                             detail={"effect": d.effect, "kind": p.kind,
                                     "level": p.step.level,
                                     "request": {"method": control.method,
                                                 "target": control.target.name,
                                                 "path": path, "body": body}}))
    return entries


def _count_match(metrics: Metrics, rule_id: str, action: str) -> None:
    metrics.matches.labels(rule_id, action).inc()


def _log_rejected(metrics: Metrics, rule_id: str, control: str, label: str,
                  shown: str) -> None:
    metrics.key_rejected.labels(rule_id, control).inc()
    log.warning("label value refused by key pattern", rule=rule_id, control=control,
                label=label, value=shown)


def _log_truncated(metrics: Metrics, rule_id: str, alert: Alert) -> None:
    metrics.truncated.labels(alert.source).inc()
    log.warning("truncated alert group: scope unknown, escalating; raise max_alerts on the"
                " Alertmanager receiver", rule=rule_id, group_key=alert.group_key,
                truncated_alerts=alert.truncated_alerts)


def step_entry(planned: PlannedStep, ins: Inserted) -> Entry | None:
    """The intent for an inserted step, 'already contained' for a held one, else nothing."""
    if ins.row is not None:
        control = planned.step.control
        path, body = control.render(ins.row.key, ins.row.level, audit.for_step(ins.row))
        return intent_entry(ins.row, control.method, control.target.name, path, body)
    if ins.held_level is not None:
        return held_entry(ins.step, ins.held_level)
    return None


def _resolved_entry(alert: Alert, d: Decision, resolved: int | None,
                    still_open: int | None) -> Entry:
    if resolved is not None:
        incident_id, note = resolved, "resolved, containment held"
    elif still_open is not None:
        incident_id, note = still_open, "alert resolved; other alerts of the incident still fire"
    else:
        incident_id, note = None, "no open incident; nothing opened"
    return Entry(Kind.ALERT_RESOLVED, incident_id=incident_id, rule_id=d.rule.id,
                 detail={"fingerprint": alert.fingerprint, "note": note})


def containment_failed(chain: ChainAppender, incident_id: int, rule_id: str, reason: str,
                       metrics: Metrics, correlation_id: str | None = None) -> Entry:
    """The record, and after commit the metric and error log, for containment that could
    not be confirmed."""

    def announce() -> None:
        metrics.containment_failed.labels(rule_id).inc()
        log.error("containment failed", rule=rule_id, incident=incident_id, reason=reason)

    chain.after_commit(bound(announce, correlation_id))
    return Entry(Kind.CONTAINMENT_FAILED, incident_id=incident_id, rule_id=rule_id,
                 detail={"reason": reason}, correlation_id=correlation_id)
