"""Record alerts and the engine's decisions in one transaction: inbox, incidents, intents."""

from __future__ import annotations

import json
import uuid
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
from responder.store.writer import Unit

log = structlog.get_logger("responder.engine")


@dataclass
class Recorded:
    """What a batch of alerts turned into: counts, and the incidents with work to do."""

    new: int = 0
    redelivered: int = 0
    incidents: set[int] = field(default_factory=set)


def record_alerts(alerts: Sequence[Alert], table: RuleTable, metrics: Metrics,
                  redactor: Redactor) -> Unit[Recorded]:
    """A writer unit that durably records the alerts and plans their containment."""

    async def unit(conn: Conn, chain: ChainAppender) -> Recorded:
        result = Recorded()
        for alert in alerts:
            row = await conn.fetchrow(
                "INSERT INTO inbox (dedup_key, source, fingerprint, status, starts_at, alert,"
                " group_key, truncated_alerts) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
                " ON CONFLICT (dedup_key) DO UPDATE SET deliveries = inbox.deliveries + 1,"
                " last_delivery_at = now() RETURNING id, deliveries",
                alert.dedup_key, alert.source, alert.fingerprint, alert.status, alert.starts_at,
                json.dumps(alert.to_json()), alert.group_key, alert.truncated_alerts,
            )
            assert row is not None  # INSERT ... RETURNING always yields the row
            if row["deliveries"] > 1:
                result.redelivered += 1
                continue
            result.new += 1
            decisions = decide(alert, table)
            await chain.append(Entry("alert_received", detail={
                "inbox_id": row["id"],
                "alert": redactor.value(alert.to_json()),
                "matched_rules": [d.rule.id for d in decisions],
            }))
            for decision in decisions:
                incident = await _apply(conn, chain, alert, decision, metrics, row["id"],
                                        redactor)
                if incident is not None:
                    result.incidents.add(incident)
        return result

    return unit


async def _open_incident(conn: Conn, chain: ChainAppender,
                         decision: Decision) -> int:
    rule = decision.rule
    incident_id: int | None = await conn.fetchval(
        "INSERT INTO incidents (rule_id, scope, severity, status, rules_hash)"
        " VALUES ($1, $2, $3, 'open', $4)"
        " ON CONFLICT (rule_id, scope) WHERE status = 'open' DO NOTHING RETURNING id",
        rule.id, decision.scope, rule.severity, chain.rules_hash,
    )
    if incident_id is not None:
        await chain.append(Entry("incident_opened", incident_id=incident_id, rule_id=rule.id,
                                 detail={"scope": decision.scope, "severity": rule.severity,
                                         "description": rule.description}))
        return incident_id
    existing: int = await conn.fetchval(
        "SELECT id FROM incidents WHERE rule_id = $1 AND scope = $2 AND status = 'open'",
        rule.id, decision.scope,
    )
    return existing


async def _apply(conn: Conn, chain: ChainAppender, alert: Alert,
                 decision: Decision, metrics: Metrics, inbox_id: int,
                 redactor: Redactor) -> int | None:
    rule = decision.rule
    if decision.action == "resolve":
        await _resolve(conn, chain, alert, decision)
        return None
    incident_id = await _open_incident(conn, chain, decision)
    await chain.append(Entry("alert_matched", incident_id=incident_id, rule_id=rule.id,
                             detail={"inbox_id": inbox_id, "fingerprint": alert.fingerprint,
                                     "starts_at": alert.starts_at,
                                     "labels": redactor.value(alert.labels)}))
    if decision.action == "notify":
        await chain.append(Entry("notify_only", incident_id=incident_id, rule_id=rule.id,
                                 detail={"fingerprint": alert.fingerprint}))
        return None
    for rejected in decision.rejected:
        metrics.key_rejected.labels(rule.id, rejected.control).inc()
        log.warning("label value refused by key pattern", rule=rule.id,
                    control=rejected.control, label=rejected.label, value=rejected.preview)
        await chain.append(Entry("key_rejected", incident_id=incident_id, rule_id=rule.id,
                                 control=rejected.control,
                                 detail={"label": rejected.label, "value": rejected.preview}))
    if decision.scope_unknown:
        metrics.truncated.labels(alert.source).inc()
        log.warning("truncated alert group: scope unknown, escalating; raise max_alerts on the"
                    " Alertmanager receiver", rule=rule.id, group_key=alert.group_key,
                    truncated_alerts=alert.truncated_alerts)
        await chain.append(Entry("scope_unknown", incident_id=incident_id, rule_id=rule.id,
                                 detail={"group_key": alert.group_key,
                                         "truncated_alerts": alert.truncated_alerts}))
    if decision.rejected and not any(s.kind == "escalation" for s in decision.steps):
        await record_containment_failed(chain, incident_id, rule.id, "no usable escalation",
                                        metrics)
    for planned in decision.steps:
        await plan_step(conn, chain, incident_id, rule.id, planned)
    return incident_id


async def _resolve(conn: Conn, chain: ChainAppender, alert: Alert,
                   decision: Decision) -> None:
    incident_id = await conn.fetchval(
        "UPDATE incidents SET status = 'resolved', resolved_at = now()"
        " WHERE rule_id = $1 AND scope = $2 AND status = 'open' RETURNING id",
        decision.rule.id, decision.scope,
    )
    note = ("resolved, containment held" if incident_id is not None
            else "no open incident; nothing opened")
    await chain.append(Entry("alert_resolved", incident_id=incident_id,
                             rule_id=decision.rule.id,
                             detail={"fingerprint": alert.fingerprint, "note": note}))


async def plan_step(conn: Conn, chain: ChainAppender, incident_id: int,
                    rule_id: str, planned: PlannedStep) -> int | None:
    """Write a step and its intent, unless the level is already held or already planned."""
    control, key, level = planned.step.control.name, planned.key, planned.step.level
    held = await conn.fetchrow("SELECT level, rank FROM control_levels"
                               " WHERE control = $1 AND key = $2", control, key)
    if held is not None and held["rank"] >= planned.rank:
        await chain.append(Entry("already_contained", incident_id=incident_id, rule_id=rule_id,
                                 control=control, key=key,
                                 detail={"requested": level, "held": held["level"]}))
        return None
    esc_control = esc_key = esc_level = None
    if planned.escalation is not None:
        esc_step, esc_key = planned.escalation
        esc_control, esc_level = esc_step.control.name, esc_step.level
    idempotency_key = f"responder-{uuid.uuid4()}"
    step_id: int | None = await conn.fetchval(
        "INSERT INTO steps (incident_id, kind, position, control, key, level, rank,"
        " escalate_control, escalate_key, escalate_level, idempotency_key)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
        " ON CONFLICT (incident_id, kind, control, key, level) DO NOTHING RETURNING id",
        incident_id, planned.kind, planned.position, control, key, level, planned.rank,
        esc_control, esc_key, esc_level, idempotency_key,
    )
    if step_id is None:
        return None  # this incident already asked for exactly this
    path, _ = planned.step.control.render(key, level)
    await chain.append(Entry("intent", incident_id=incident_id, rule_id=rule_id,
                             control=control, key=key, step_id=step_id,
                             detail={"kind": planned.kind, "level": level,
                                     "idempotency_key": idempotency_key,
                                     "request": {"method": planned.step.control.method,
                                                 "target": planned.step.control.target.name,
                                                 "path": path}}))
    return step_id


async def record_containment_failed(chain: ChainAppender, incident_id: int, rule_id: str,
                                    reason: str, metrics: Metrics) -> None:
    metrics.containment_failed.labels(rule_id).inc()
    log.error("containment failed", rule=rule_id, incident=incident_id, reason=reason)
    await chain.append(Entry("containment_failed", incident_id=incident_id, rule_id=rule_id,
                             detail={"reason": reason}))
