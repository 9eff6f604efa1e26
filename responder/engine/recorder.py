"""Record alerts and the engine's decisions in one transaction: inbox, incidents, intents.

However many alerts and webhooks a batch carries, recording it costs two statements: the
plan (inbox, incidents, steps) and the action-log append; three when the batch may claim
new steps for this replica (the key locks come first, in a statement of their own).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import structlog

from responder.engine import audit
from responder.engine.planner import Decision, PlannedStep, decide, preview
from responder.engine.policy import Policy
from responder.engine.unmatched import count_unmatched, is_unmatched
from responder.metrics import Metrics
from responder.model import Alert
from responder.redaction import Redactor
from responder.rules.table import RuleTable
from responder.store import locks
from responder.store.actionlog import ChainAppender, Entry
from responder.store.db import Conn
from responder.store.intake_sql import ALERTS_SQL, RECORD_SQL
from responder.store.steps import Inserted, NewStep, StepRow, held_entry, intent_entry

log = structlog.get_logger("responder.engine")

MAX_EARLY_CLAIMS = 32
"""Keys per batch whose first step may be claimed while recording. Each costs an advisory
lock until commit, and PostgreSQL's lock table is shared and finite; a step past this
count is claimed the usual way, a round trip later."""

@dataclass
class Recorded:
    """What a batch of alerts turned into: counts, and the steps to execute now."""

    new: int = 0
    redelivered: int = 0
    incidents: set[int] = field(default_factory=set)
    steps: list[StepRow] = field(default_factory=list)
    replayed: bool = False


@dataclass(frozen=True)
class RecordAlerts:
    """A writer unit that durably records alerts and plans their containment.

    Units that arrive together are merged by ``run_many`` into one statement, which is
    what lets concurrent webhooks share a round trip and a commit.
    """

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
    prepared: dict[str, _Prepared] = field(init=False, repr=False, compare=False)
    """Per alert (by dedup key), what needs no store: worked out when the unit is made,
    in the intake's task, so the writer's one transaction at a time does not wait on it."""

    def __post_init__(self) -> None:
        prepared: dict[str, _Prepared] = {}
        for alert in self.alerts:
            if alert.dedup_key not in prepared:
                body = alert.to_json()
                prepared[alert.dedup_key] = _Prepared(
                    decide(alert, self.table, self.policy), json.dumps(body),
                    self.redactor.value(body), self.redactor.value(alert.labels))
        object.__setattr__(self, "prepared", prepared)

    async def __call__(self, conn: Conn, chain: ChainAppender) -> Recorded:
        return (await self.run_many(conn, chain, [self]))[0]

    @staticmethod
    async def run_many(conn: Conn, chain: ChainAppender,
                       jobs: Sequence[RecordAlerts]) -> list[Recorded]:
        results = [Recorded() for _ in jobs]
        replayed = await _claim_nonces(conn, jobs)
        owners: dict[str, tuple[int, Alert]] = {}
        for j, job in enumerate(jobs):
            if j in replayed:
                results[j].replayed = True
                continue
            for alert in job.alerts:
                if alert.dedup_key in owners:  # the same alert twice in this batch
                    results[j].redelivered += 1
                else:
                    owners[alert.dedup_key] = (j, alert)
        plan = _Plan(owners, jobs)
        replica = jobs[0].replica
        locked: list[str] = []
        if replica is not None and plan.steps:
            keys = sorted({locks.key_name(p.step.control.name, p.key)
                           for _, _, p, _ in plan.steps})
            locked = await locks.try_keys(conn, keys[:MAX_EARLY_CLAIMS])
        row = await conn.fetchrow(RECORD_SQL, *plan.arguments(chain.rules_hash), locked,
                                  replica, jobs[0].lease_s)
        assert row is not None
        outcome = _Outcome(row, plan)
        states = plan.alert_states([key for key in owners if outcome.inbox[key][1] == 1])
        if not all(states[3]):  # firing alerts alone were tracked by RECORD_SQL
            outcome.settle(await conn.fetchval(ALERTS_SQL, *states))
        entries: list[Entry] = []
        for key, (j, alert) in owners.items():
            inbox_id, deliveries = outcome.inbox[key]
            if deliveries > 1:
                results[j].redelivered += 1
                continue
            results[j].new += 1
            cid = jobs[j].correlation_id
            hooks = len(chain.commit_hooks)
            entries.extend(dataclasses.replace(e, correlation_id=cid) for e in
                           outcome.entries_for(chain, alert, inbox_id, plan.decisions[key],
                                               results[j], jobs[j]))
            chain.commit_hooks[hooks:] = [_bound(h, cid) for h in chain.commit_hooks[hooks:]]
        chain.add(*entries)
        return results


@dataclass(frozen=True)
class _Prepared:
    decisions: list[Decision]
    alert_json: str
    redacted: object
    redacted_labels: object


def _bound(hook: Callable[[], None], correlation_id: str | None) -> Callable[[], None]:
    """Run an after-commit hook with its alert's correlation id on every log line: hooks
    run in the writer's task, outside the intake request's context."""

    def run() -> None:
        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            hook()

    return run


NONCE_SQL = """
INSERT INTO event_nonces (source, event_id)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING RETURNING source, event_id
"""


async def _claim_nonces(conn: Conn, jobs: Sequence[RecordAlerts]) -> set[int]:
    """Claim each signed event's id in the same transaction as its alerts; return the jobs
    whose id was seen before (replays), which record nothing."""
    wanted = [(j, job.nonce) for j, job in enumerate(jobs) if job.nonce is not None]
    if not wanted:
        return set()
    rows = await conn.fetch(NONCE_SQL, [n[0] for _, n in wanted], [n[1] for _, n in wanted])
    fresh = {(r["source"], r["event_id"]) for r in rows}
    replayed = set()
    for j, nonce in wanted:
        if nonce in fresh:
            fresh.discard(nonce)  # the first job with this id claims it
        else:
            replayed.add(j)
    return replayed


class _Plan:
    """The decisions for every alert of a batch, flattened into the statement's arrays."""

    def __init__(self, owners: dict[str, tuple[int, Alert]],
                 jobs: Sequence[RecordAlerts]) -> None:
        self.owners = owners
        self.alerts = [a for _, a in owners.values()]
        self.prepared = {key: jobs[j].prepared[key] for key, (j, _) in owners.items()}
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

    def arguments(self, rules_hash: str) -> list[object]:
        a = self.alerts
        dec = [(key, d) for key, ds in self.decisions.items() for d in ds]
        steps = [(key, d, new_step(0, d.rule.id, p), idem) for key, d, p, idem in self.steps]
        return [
            [x.dedup_key for x in a], [x.source for x in a], [x.fingerprint for x in a],
            [x.status for x in a], [x.starts_at for x in a],
            [self.prepared[x.dedup_key].alert_json for x in a], [x.group_key for x in a],
            [x.truncated_alerts for x in a],
            [k for k, _ in dec], [d.rule.id for _, d in dec], [d.scope for _, d in dec],
            [d.rule.severity for _, d in dec], [d.action for _, d in dec],
            [k for k, _, _, _ in steps], [d.rule.id for _, d, _, _ in steps],
            [d.scope for _, d, _, _ in steps], [s.kind for _, _, s, _ in steps],
            [s.position for _, _, s, _ in steps], [s.control for _, _, s, _ in steps],
            [s.key for _, _, s, _ in steps], [s.level for _, _, s, _ in steps],
            [s.rank for _, _, s, _ in steps], [s.escalate_control for _, _, s, _ in steps],
            [s.escalate_key for _, _, s, _ in steps], [s.escalate_level for _, _, s, _ in steps],
            [i for _, _, _, i in steps],
            rules_hash,
            [self.cids[x.dedup_key] for x in a],
            [self.cids[k] for k, _ in dec],
            [self.cids[k] for k, _, _, _ in steps],
        ]


class IncidentRace(Exception):
    """Another replica opened an incident after our snapshot; the batch is retried."""


class _Outcome:
    """The statement's answer, and the action-log entries it implies, in alert order."""

    def __init__(self, row: asyncpg.Record, plan: _Plan) -> None:
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
                    result: Recorded, job: RecordAlerts) -> list[Entry]:
        entries = [Entry("alert_received", detail={
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
                entries.append(Entry("incident_opened", incident_id=incident_id,
                                     rule_id=d.rule.id,
                                     detail={"scope": job.redactor.text(d.scope),
                                             "severity": d.rule.severity,
                                             "description": d.rule.description}))
            entries.append(Entry("alert_matched", incident_id=incident_id, rule_id=d.rule.id,
                                 detail={"inbox_id": inbox_id, "fingerprint": alert.fingerprint,
                                         "starts_at": alert.starts_at,
                                         "labels": job.prepared[alert.dedup_key].redacted_labels}))
            # A notify-only incident gets its evidence (and any page) like any other.
            result.incidents.add(incident_id)
            if d.action == "notify":
                entries.append(Entry("notify_only", incident_id=incident_id, rule_id=d.rule.id,
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


def _warnings(alert: Alert, d: Decision, incident_id: int, job: RecordAlerts,
              chain: ChainAppender) -> list[Entry]:
    rule, metrics = d.rule, job.metrics
    entries = []
    for rejected in d.rejected:
        # Redact before cutting, so a secret is never left half-visible by the cut.
        shown = preview(job.redactor.text(rejected.value))
        chain.after_commit(functools.partial(_log_rejected, metrics, rule.id, rejected.control,
                                             rejected.label, shown))
        entries.append(Entry("key_rejected", incident_id=incident_id, rule_id=rule.id,
                             control=rejected.control,
                             detail={"label": rejected.label, "value": shown}))
    if d.scope_unknown:
        chain.after_commit(functools.partial(_log_truncated, metrics, rule.id, alert))
        entries.append(Entry("scope_unknown", incident_id=incident_id, rule_id=rule.id,
                             detail={"group_key": alert.group_key,
                                     "truncated_alerts": alert.truncated_alerts}))
    if d.rejected and not any(s.kind == "escalation" for s in d.steps):
        entries.append(containment_failed(chain, incident_id, rule.id, "no usable escalation",
                                          metrics))
    return entries


def _storm_entry(d: Decision, incident_id: int, job: RecordAlerts,
                 chain: ChainAppender) -> Entry:
    action = (f"{d.steps[0].step.describe()} instead" if d.steps
              else "paused: no storm step, nothing done")
    chain.after_commit(functools.partial(
        log.error, "blast-radius guard tripped; page a person", rule=d.rule.id, why=d.storm,
        action=action))
    return Entry("storm_guard_tripped", incident_id=incident_id, rule_id=d.rule.id,
                 detail={"why": d.storm, "scope": job.redactor.text(d.storm_scope),
                         "action": action})


def _not_acting(d: Decision, incident_id: int, job: RecordAlerts,
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
        entries.append(Entry("would_act", incident_id=incident_id, rule_id=d.rule.id,
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


def new_step(incident_id: int, rule_id: str, planned: PlannedStep,
             correlation_id: str | None = None) -> NewStep:
    esc_control = esc_key = esc_level = None
    if planned.escalation is not None:
        esc_step, esc_key = planned.escalation
        esc_control, esc_level = esc_step.control.name, esc_step.level
    return NewStep(incident_id, rule_id, planned.kind, planned.position,
                   planned.step.control.name, planned.key, planned.step.level, planned.rank,
                   esc_control, esc_key, esc_level, correlation_id)


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
    return Entry("alert_resolved", incident_id=incident_id, rule_id=d.rule.id,
                 detail={"fingerprint": alert.fingerprint, "note": note})


def containment_failed(chain: ChainAppender, incident_id: int, rule_id: str, reason: str,
                       metrics: Metrics, correlation_id: str | None = None) -> Entry:
    """The record, and after commit the metric and error log, for containment that could
    not be confirmed."""

    def announce() -> None:
        metrics.containment_failed.labels(rule_id).inc()
        log.error("containment failed", rule=rule_id, incident=incident_id, reason=reason)

    chain.after_commit(_bound(announce, correlation_id))
    return Entry("containment_failed", incident_id=incident_id, rule_id=rule_id,
                 detail={"reason": reason}, correlation_id=correlation_id)
