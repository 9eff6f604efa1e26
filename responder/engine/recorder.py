"""Record alerts and the engine's decisions in one transaction: inbox, incidents, intents.

A unit issues a fixed handful of set-based statements however many alerts it carries:
inbox upsert, incident open/resolve, step insert, action-log append.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from responder.engine.planner import Decision, PlannedStep, decide
from responder.metrics import Metrics
from responder.model import Alert
from responder.redaction import Redactor
from responder.rules.table import RuleTable
from responder.store.actionlog import ChainAppender, Entry
from responder.store.db import Conn
from responder.store.steps import (
    Inserted,
    NewStep,
    StepRow,
    held_entry,
    insert_steps,
    intent_entry,
)
from responder.store.writer import Unit

log = structlog.get_logger("responder.engine")

Scope = tuple[str, str]  # (rule id, scope)

INBOX_SQL = """
INSERT INTO inbox (dedup_key, source, fingerprint, status, starts_at, alert, group_key,
                   truncated_alerts)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
                     $7::text[], $8::int[])
ON CONFLICT (dedup_key) DO UPDATE SET deliveries = inbox.deliveries + 1,
                                      last_delivery_at = now()
RETURNING dedup_key, id, deliveries
"""

OPEN_SQL = """
WITH wanted AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS w(rule_id, scope, severity)
), opened AS (
    INSERT INTO incidents (rule_id, scope, severity, status, rules_hash)
    SELECT rule_id, scope, severity, 'open', $4 FROM wanted
    ON CONFLICT (rule_id, scope) WHERE status = 'open' DO NOTHING
    RETURNING id, rule_id, scope
)
SELECT id, rule_id, scope, true AS is_new FROM opened
UNION ALL
SELECT i.id, i.rule_id, i.scope, false FROM incidents i
JOIN wanted w ON w.rule_id = i.rule_id AND w.scope = i.scope WHERE i.status = 'open'
"""

RESOLVE_SQL = """
UPDATE incidents i SET status = 'resolved', resolved_at = now()
FROM unnest($1::text[], $2::text[]) AS w(rule_id, scope)
WHERE i.rule_id = w.rule_id AND i.scope = w.scope AND i.status = 'open'
RETURNING i.id, i.rule_id, i.scope
"""


@dataclass
class Recorded:
    """What a batch of alerts turned into: counts, and the steps to execute now."""

    new: int = 0
    redelivered: int = 0
    incidents: set[int] = field(default_factory=set)
    steps: list[StepRow] = field(default_factory=list)


def record_alerts(alerts: Sequence[Alert], table: RuleTable, metrics: Metrics,
                  redactor: Redactor) -> Unit[Recorded]:
    """A writer unit that durably records the alerts and plans their containment."""

    async def unit(conn: Conn, chain: ChainAppender) -> Recorded:
        unique: dict[str, Alert] = {}
        for alert in alerts:
            unique.setdefault(alert.dedup_key, alert)
        result = Recorded(redelivered=len(alerts) - len(unique))
        rows = await conn.fetch(INBOX_SQL, *_inbox_columns(list(unique.values())))
        fresh: list[tuple[Alert, int, list[Decision]]] = []
        for row in rows:
            if row["deliveries"] > 1:
                result.redelivered += 1
                continue
            alert = unique[row["dedup_key"]]
            fresh.append((alert, row["id"], decide(alert, table)))
        result.new = len(fresh)
        if fresh:
            await _Recording(conn, chain, metrics, redactor, result).run(fresh)
        return result

    return unit


def _inbox_columns(alerts: list[Alert]) -> list[list[object]]:
    return [
        [a.dedup_key for a in alerts], [a.source for a in alerts],
        [a.fingerprint for a in alerts], [a.status for a in alerts],
        [a.starts_at for a in alerts], [json.dumps(a.to_json()) for a in alerts],
        [a.group_key for a in alerts], [a.truncated_alerts for a in alerts],
    ]


def new_step(incident_id: int, rule_id: str, planned: PlannedStep) -> NewStep:
    esc_control = esc_key = esc_level = None
    if planned.escalation is not None:
        esc_step, esc_key = planned.escalation
        esc_control, esc_level = esc_step.control.name, esc_step.level
    return NewStep(incident_id, rule_id, planned.kind, planned.position,
                   planned.step.control.name, planned.key, planned.step.level, planned.rank,
                   esc_control, esc_key, esc_level)


def step_entry(planned: PlannedStep, ins: Inserted) -> Entry | None:
    """The intent for an inserted step, 'already contained' for a held one, else nothing."""
    if ins.row is not None:
        control = planned.step.control
        path, _ = control.render(ins.row.key, ins.row.level)
        return intent_entry(ins.row, control.method, control.target.name, path)
    if ins.held_level is not None:
        return held_entry(ins.step, ins.held_level)
    return None


class _Recording:
    """One unit's worth of decisions turned into rows and records, in a few statements."""

    def __init__(self, conn: Conn, chain: ChainAppender, metrics: Metrics, redactor: Redactor,
                 result: Recorded) -> None:
        self.conn = conn
        self.chain = chain
        self.metrics = metrics
        self.redactor = redactor
        self.result = result

    async def run(self, fresh: list[tuple[Alert, int, list[Decision]]]) -> None:
        decisions = [(a, i, d) for a, i, ds in fresh for d in ds]
        incidents = await self._open([d for _, _, d in decisions if d.action != "resolve"])
        resolved = await self._resolve([d for _, _, d in decisions if d.action == "resolve"])
        planned: list[tuple[int, PlannedStep, Decision]] = [
            (incidents[(d.rule.id, d.scope)][0], p, d)
            for _, _, d in decisions if d.action == "contain" for p in d.steps]
        wanted = [new_step(inc, d.rule.id, p) for inc, p, d in planned]
        by_key = {ins.step.natural_key: ins for ins in await insert_steps(self.conn, wanted)}
        entries: list[Entry] = []
        announced: set[int] = set()
        cursor = 0
        for alert, inbox_id, alert_decisions in fresh:
            entries.append(Entry("alert_received", detail={
                "inbox_id": inbox_id,
                "alert": self.redactor.value(alert.to_json()),
                "matched_rules": [d.rule.id for d in alert_decisions],
            }))
            for d in alert_decisions:
                if d.action == "resolve":
                    entries.append(_resolved_entry(alert, d, resolved.get((d.rule.id, d.scope))))
                    continue
                incident_id, is_new = incidents[(d.rule.id, d.scope)]
                if is_new and incident_id not in announced:
                    announced.add(incident_id)
                    entries.append(Entry("incident_opened", incident_id=incident_id,
                                         rule_id=d.rule.id,
                                         detail={"scope": d.scope, "severity": d.rule.severity,
                                                 "description": d.rule.description}))
                entries.append(Entry("alert_matched", incident_id=incident_id, rule_id=d.rule.id,
                                     detail={"inbox_id": inbox_id,
                                             "fingerprint": alert.fingerprint,
                                             "starts_at": alert.starts_at,
                                             "labels": self.redactor.value(alert.labels)}))
                if d.action == "notify":
                    entries.append(Entry("notify_only", incident_id=incident_id,
                                         rule_id=d.rule.id,
                                         detail={"fingerprint": alert.fingerprint}))
                    continue
                self.result.incidents.add(incident_id)
                entries.extend(self._warnings(alert, d, incident_id))
                for planned_step in d.steps:
                    wanted_step = wanted[cursor]
                    cursor += 1
                    ins = by_key[wanted_step.natural_key]
                    if ins.step is not wanted_step:
                        continue  # a duplicate of a step asked for earlier in this unit
                    if (entry := step_entry(planned_step, ins)) is not None:
                        entries.append(entry)
                    if ins.row is not None:
                        self.result.steps.append(ins.row)
        await self.chain.append_many(entries)

    async def _open(self, decisions: list[Decision]) -> dict[Scope, tuple[int, bool]]:
        wanted = {(d.rule.id, d.scope): d.rule.severity for d in decisions}
        if not wanted:
            return {}
        keys = list(wanted)
        rows = await self.conn.fetch(OPEN_SQL, [k[0] for k in keys], [k[1] for k in keys],
                                     list(wanted.values()), self.chain.rules_hash)
        found = {(r["rule_id"], r["scope"]): (r["id"], r["is_new"]) for r in rows}
        for key in keys:
            if key not in found:  # opened by another replica after our snapshot
                incident_id = await self.conn.fetchval(
                    "SELECT id FROM incidents WHERE rule_id = $1 AND scope = $2"
                    " AND status = 'open'", *key)
                found[key] = (incident_id, False)
        return found

    async def _resolve(self, decisions: list[Decision]) -> dict[Scope, int]:
        if not decisions:
            return {}
        rows = await self.conn.fetch(RESOLVE_SQL, [d.rule.id for d in decisions],
                                     [d.scope for d in decisions])
        return {(r["rule_id"], r["scope"]): r["id"] for r in rows}

    def _warnings(self, alert: Alert, d: Decision, incident_id: int) -> list[Entry]:
        rule = d.rule
        entries = []
        for rejected in d.rejected:
            self.metrics.key_rejected.labels(rule.id, rejected.control).inc()
            log.warning("label value refused by key pattern", rule=rule.id,
                        control=rejected.control, label=rejected.label, value=rejected.preview)
            entries.append(Entry("key_rejected", incident_id=incident_id, rule_id=rule.id,
                                 control=rejected.control,
                                 detail={"label": rejected.label, "value": rejected.preview}))
        if d.scope_unknown:
            self.metrics.truncated.labels(alert.source).inc()
            log.warning("truncated alert group: scope unknown, escalating; raise max_alerts on"
                        " the Alertmanager receiver", rule=rule.id, group_key=alert.group_key,
                        truncated_alerts=alert.truncated_alerts)
            entries.append(Entry("scope_unknown", incident_id=incident_id, rule_id=rule.id,
                                 detail={"group_key": alert.group_key,
                                         "truncated_alerts": alert.truncated_alerts}))
        if d.rejected and not any(s.kind == "escalation" for s in d.steps):
            entries.append(containment_failed(incident_id, rule.id, "no usable escalation",
                                              self.metrics))
        return entries


def _resolved_entry(alert: Alert, d: Decision, incident_id: int | None) -> Entry:
    note = ("resolved, containment held" if incident_id is not None
            else "no open incident; nothing opened")
    return Entry("alert_resolved", incident_id=incident_id, rule_id=d.rule.id,
                 detail={"fingerprint": alert.fingerprint, "note": note})


def containment_failed(incident_id: int, rule_id: str, reason: str, metrics: Metrics) -> Entry:
    """The record (plus metric and error log) for containment that could not be confirmed."""
    metrics.containment_failed.labels(rule_id).inc()
    log.error("containment failed", rule=rule_id, incident=incident_id, reason=reason)
    return Entry("containment_failed", incident_id=incident_id, rule_id=rule_id,
                 detail={"reason": reason})
