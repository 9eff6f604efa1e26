"""Record alerts and the engine's decisions in one transaction: inbox, incidents, intents.

However many alerts and webhooks a batch carries, recording it costs two statements: the
plan (inbox, incidents, steps, and the key locks of the steps it claims early) and the
action-log append.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from responder.engine.record_entries import (
    IncidentRace,
    Outcome,
    bound,
    containment_failed,
    step_entry,
)
from responder.engine.record_job import AlertBatch, Recorded
from responder.engine.record_plan import Plan, new_step
from responder.model import Alert
from responder.store import intake_sql
from responder.store.actionlog import ChainAppender, Entry
from responder.store.types import Conn

# The engine imports these from here; the entries live in record_entries, the rows the
# statement writes in record_plan.
__all__ = ["IncidentRace", "RecordAlerts", "Recorded", "containment_failed", "new_step",
           "step_entry"]

MAX_EARLY_CLAIMS = 32
"""Keys per batch whose first step may be claimed while recording. Each costs an advisory
lock until commit, and PostgreSQL's lock table is shared and finite; a step past this
count is claimed the usual way, a round trip later."""

@dataclass(frozen=True)
class RecordAlerts(AlertBatch):
    """A writer unit that durably records alerts and plans their containment.

    Units that arrive together are merged by ``run_many`` into one statement, which is
    what lets concurrent webhooks share a round trip and a commit.
    """

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
            # The statement takes their locks, held until the batch commits; a key someone
            # holds (a person, a claim) is simply not claimed early.
            recording.early = plan.lock_names()[:MAX_EARLY_CLAIMS]
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
