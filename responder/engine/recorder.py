"""Record alerts and the engine's decisions in one transaction: inbox, incidents, intents.

However many alerts and webhooks a batch carries, recording it costs two statements: the
plan (inbox, incidents, steps) and the action-log append; three when the batch may claim
new steps for this replica (the key locks come first, in a statement of their own).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from responder.engine.planner import Decision, decide
from responder.engine.policy import Policy
from responder.engine.record_entries import (
    IncidentRace,
    Outcome,
    bound,
    containment_failed,
    step_entry,
)
from responder.engine.record_plan import Plan, new_step
from responder.metrics import Metrics
from responder.model import Alert
from responder.redaction import Redactor
from responder.rules.table import RuleTable
from responder.store import intake_sql
from responder.store.actionlog import ChainAppender, Entry
from responder.store.db import Conn
from responder.store.steps import StepRow

# The engine imports these from here; the entries live in record_entries, the rows the
# statement writes in record_plan.
__all__ = ["IncidentRace", "RecordAlerts", "Recorded", "containment_failed", "new_step",
           "step_entry"]

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
                redacted = self.redactor.value(body)
                # "labels" is no secret-named key, so its redacted value is the labels'.
                prepared[alert.dedup_key] = _Prepared(
                    decide(alert, self.table, self.policy), _json_text(body), redacted,
                    redacted["labels"])
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
        plan = Plan(owners, jobs)
        recording = plan.recording(chain.rules_hash)
        recording.replica, recording.lease_s = jobs[0].replica, jobs[0].lease_s
        if recording.replica is not None and plan.steps:
            recording.locked = await intake_sql.lock_keys(
                conn, plan.lock_names()[:MAX_EARLY_CLAIMS])
        outcome = Outcome(await intake_sql.record(conn, recording), plan)
        states = plan.alert_states([key for key in owners if outcome.inbox[key][1] == 1])
        if not all(states[3]):  # firing alerts alone were tracked by RECORD_SQL
            outcome.settle(await intake_sql.settle_alerts(conn, states))
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
            chain.commit_hooks[hooks:] = [bound(h, cid) for h in chain.commit_hooks[hooks:]]
        chain.add(*entries)
        return results


@dataclass(frozen=True)
class _Prepared:
    decisions: list[Decision]
    alert_json: str
    redacted: object
    redacted_labels: object


def _json_text(body: dict[str, object]) -> str:
    """The alert for its jsonb column (any spelling of the same JSON will do there)."""
    try:
        return orjson.dumps(body).decode()
    except orjson.JSONEncodeError:  # what orjson refuses, such as a lone surrogate
        return json.dumps(body)


async def _claim_nonces(conn: Conn, jobs: Sequence[RecordAlerts]) -> set[int]:
    """Claim each signed event's id in the same transaction as its alerts; return the jobs
    whose id was seen before (replays), which record nothing."""
    wanted = [(j, job.nonce) for j, job in enumerate(jobs) if job.nonce is not None]
    if not wanted:
        return set()
    fresh = await intake_sql.claim_nonces(conn, [n for _, n in wanted])
    replayed = set()
    for j, nonce in wanted:
        if nonce in fresh:
            fresh.discard(nonce)  # the first job with this id claims it
        else:
            replayed.add(j)
    return replayed
