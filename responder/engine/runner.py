"""Run one step: claim it, check what its key holds, call through engine/levels.py, and
record the outcome, escalating on failure.

Levels never go down: under the per-key lock each step reads what the store holds for its
key, and a pending step of higher rank on the same key that was already claimed (so may have
reached the target) counts as held. That matters after a crash, when a higher step may
already be applied on the target without its outcome written: the lower step must not run
after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import structlog

from responder.actions.admin_http import AdminClient
from responder.engine import audit, levels
from responder.engine.leases import Early, Lease, Leases
from responder.engine.levels import KeyLocks, Outcome
from responder.engine.planner import PlannedStep
from responder.engine.recorder import containment_failed, new_step, step_entry
from responder.errors import ActionPermanentError
from responder.metrics import Metrics
from responder.rules.table import Control, RuleTable, Step
from responder.store.actionlog import ChainAppender, Entry
from responder.store.claims import Claim, Refusal, claim
from responder.store.kinds import Kind
from responder.store.levels import StepHeld
from responder.store.steps import CloseStep, StepRow, insert_steps
from responder.store.types import Conn, Pool
from responder.store.writer import Unit, Writer

log = structlog.get_logger("responder.engine")

T = TypeVar("T")

LOCKED_RETRIES = 20
LOCKED_PAUSE_S = 0.025
"""A claim refused only because the key's lock is held (usually a batch recording a step
on it, for milliseconds) is tried again this often before being left to the sweep."""


class StepRunner:
    """Runs one step at a time per key; ``escalate`` queues the escalation of a failed one."""

    def __init__(self, pool: Pool, writer: Writer, rules: Callable[[], RuleTable],
                 client: AdminClient, metrics: Metrics, leases: Leases, locks: KeyLocks, *,
                 deadline_s: float, read_back_s: float, max_concurrency: int,
                 may_act: Callable[[], bool], escalate: Callable[[StepRow], None]) -> None:
        self._pool = pool
        self._writer = writer
        self._rules = rules
        self._client = client
        self._metrics = metrics
        self._leases = leases
        self._locks = locks
        self._deadline_s = deadline_s
        self._read_back_s = read_back_s
        self._may_act = may_act
        self._escalate = escalate
        self._slots = asyncio.Semaphore(max_concurrency)
        # Takeovers claimed but not yet written to the action log: a retry after a store
        # error finds the claim already ours and must still record whose lease it replaced.
        self._unrecorded: dict[int, Claim] = {}

    @property
    def replica(self) -> str:
        return self._leases.replica

    async def run(self, step: StepRow, early: Early | None) -> bool:
        """Run one step; False if another replica holds it (or its key) under a live lease."""
        with structlog.contextvars.bound_contextvars(correlation_id=step.correlation_id):
            return await self._run(step, early)

    async def _run(self, step: StepRow, early: Early | None) -> bool:
        lease_s = self._leases.lease_s
        lock = self._locks.lock(step.control, step.key)
        async with self._slots, lock:
            if not self._may_act():
                await self._hold_back(step, is_claimed=early is not None)
                return False
            claimed: Claim | Refusal
            first_renewal_s = lease_s / 3
            if early is not None and early.holds(lock, lease_s):
                # The lease began when it was recorded: renew on that lease's schedule.
                first_renewal_s = max(0.0, early.at + lease_s / 3 - time.monotonic())
                # Claimed by the transaction that recorded it, alone on its key, and
                # nothing has touched the key since: what a claim and a held-level read
                # would return is known, so the call goes out without them.
                claimed = Claim(step.id, None, None, 1)
                held: StepHeld | None = StepHeld("pending", step.held_before)
            else:
                claimed, held = await self._claim(step)
            if claimed == "closed":
                return True
            if claimed in ("busy", "locked"):
                log.info("step left to the replica holding its lease", step=step.id,
                         control=step.control, key=step.key)
                return False
            assert isinstance(claimed, Claim)
            await self._record_takeover(step, claimed)
            self._metrics.steps_inflight.inc()
            try:
                async with self._leases.kept(step, first_renewal_s) as lease:
                    await self._run_claimed(step, held, lease)
            finally:
                self._metrics.steps_inflight.dec()
            return not (lease.lost or lease.held_back)

    async def _hold_back(self, step: StepRow, *, is_claimed: bool) -> None:
        """Leave a step pending while automation may not act; a claim on it is given back."""
        log.warning("automation not enforcing: step left pending until enforce resumes",
                    step=step.id, control=step.control, key=step.key)
        if is_claimed:
            await self._leases.give_back(step)

    async def _claim(self, step: StepRow) -> tuple[Claim | Refusal, StepHeld | None]:
        for _ in range(LOCKED_RETRIES):
            claimed, held = await claim(self._pool, step.id, self.replica,
                                        self._leases.lease_s)
            if claimed != "locked":
                break
            await asyncio.sleep(LOCKED_PAUSE_S)
        return claimed, held

    async def _record_takeover(self, step: StepRow, claimed: Claim) -> None:
        """Write down, before any call, that this replica took over another's lease."""
        if claimed.is_takeover:
            self._unrecorded[step.id] = claimed
        owed = self._unrecorded.get(step.id)
        if owed is None:
            return
        until = owed.previous_until.isoformat() if owed.previous_until else None
        entry = Entry(Kind.STEP_TAKEN_OVER, incident_id=step.incident_id, rule_id=step.rule_id,
                      control=step.control, key=step.key, step_id=step.id,
                      correlation_id=step.correlation_id,
                      detail={"by": self.replica, "from": owed.previous, "lease_until": until,
                              "claims": owed.claims, "idempotency_key": step.idempotency_key})

        async def unit(conn: Conn, chain: ChainAppender) -> None:
            chain.add(entry)

        await self._record(unit)
        del self._unrecorded[step.id]
        self._metrics.step_takeovers.inc()
        log.warning("took over a step whose lease ran out; calling with its key", step=step.id,
                    previous=owed.previous, idempotency_key=step.idempotency_key)

    async def _run_claimed(self, step: StepRow, held: StepHeld | None, lease: Lease) -> None:
        if held is None or held.status != "pending":
            return  # closed meanwhile (a sweep raced with the task that ran it)
        if held.held_rank is not None and held.held_rank >= step.rank:
            await self._record(CloseStep(step, "already_contained",
                                         {"held": held.held_level}, replica=self.replica))
            return
        if held.higher_id is not None:
            await self._record(CloseStep(step, "already_contained", {
                "held": held.higher_level, "superseded_by_step": held.higher_id},
                replica=self.replica))
            return
        if not self._may_act():
            # Asked again right before the call: the mode may have changed since the claim.
            lease.held_back = True
            await self._hold_back(step, is_claimed=True)
            return
        table = self._rules()
        try:
            control = _control(table, step)
        except ActionPermanentError as e:
            if not lease.lost:
                await self._after(await self._record(
                    self._failure(step, str(e), {"call": None}, table)))
            return
        change = levels.Change(control, step.key, step.level, step.idempotency_key,
                               self._deadline_s, audit.for_step(step),
                               self._read_back_s if control.is_readable else None)
        # "before" is the level responder held; the target is not read before the call,
        # which would only delay containment. "after" is what the read-back saw.
        before = held.held_level or control.levels[0]

        def record(outcome: Outcome) -> Unit[object]:
            if outcome.error is not None:
                call = outcome.failed_call
                return self._failure(step, str(outcome.error),
                                     {"call": call.to_json() if call else None}, table)
            assert outcome.call is not None
            detail: dict[str, object] = {"call": outcome.call.to_json(), "before": before}
            if control.is_readable:
                detail["read_back"] = [r.to_json() for r in outcome.reads]
                detail["after"] = outcome.observed
                if not outcome.verified:
                    reason = (f"read-back: the target reports {outcome.observed or 'no level'},"
                              f" not {step.level}")
                    return self._failure(step, reason, detail, table)
            self._metrics.actions.labels(step.control, "applied").inc()
            log.info("step applied", step=step.id, control=step.control, key=step.key,
                     to_level=step.level, verified=outcome.verified)
            return CloseStep(step, "applied", detail, outcome.verified, self.replica)

        _, result = await levels.apply(self._client, self._writer, change, record,
                                       resumable=True, still_ours=lambda: not lease.lost)
        await self._after(result)

    async def _after(self, result: object) -> None:
        """A failed step's escalation runs next in its incident."""
        if isinstance(result, StepRow):
            self._escalate(result)

    def _failure(self, step: StepRow, reason: str, detail: Mapping[str, object],
                 table: RuleTable) -> Unit[StepRow | None]:
        log.warning("step failed", step=step.id, control=step.control, key=step.key,
                    to_level=step.level, error=reason)
        self._metrics.actions.labels(step.control, "failed").inc()
        return self._fail(step, reason, detail, table)

    async def _record(self, unit: Unit[T]) -> T:
        # Shielded: a step's outcome must be written even if shutdown cancels the task.
        return await asyncio.shield(self._writer.submit(unit))

    def _fail(self, step: StepRow, reason: str, detail_in: Mapping[str, object],
              table: RuleTable) -> Unit[StepRow | None]:
        detail: Mapping[str, object] = {"error": reason, **detail_in}
        escalation = _escalation_for(step, table)
        metrics = self._metrics
        replica = self.replica

        async def unit(conn: Conn, chain: ChainAppender) -> StepRow | None:
            if not await CloseStep(step, "failed", detail, replica=replica)(conn, chain):
                return None
            if escalation is None:
                what = "escalation failed" if step.kind == "escalation" else "no escalation"
                chain.add(containment_failed(
                    chain, step.incident_id, step.rule_id,
                    f"{what}: {step.control}[{step.key}] -> {step.level}: {reason}", metrics,
                    step.correlation_id))
                return None
            chain.add(Entry(Kind.ESCALATION, incident_id=step.incident_id, rule_id=step.rule_id,
                            control=step.escalate_control, key=step.escalate_key,
                            correlation_id=step.correlation_id,
                            detail={"after_step": step.id, "level": step.escalate_level}))
            [ins] = await insert_steps(conn, [new_step(step.incident_id, step.rule_id,
                                                       escalation, step.correlation_id)])
            if (entry := step_entry(escalation, ins)) is not None:
                chain.add(entry)
            return ins.row

        return unit


def _control(table: RuleTable, step: StepRow) -> Control:
    control = table.controls.get(step.control)
    if control is None:
        raise ActionPermanentError(f"control {step.control!r} is not in the rule table")
    return control


def _escalation_for(step: StepRow, table: RuleTable) -> PlannedStep | None:
    if step.kind != "step" or not step.escalate_control or not step.escalate_level:
        return None
    control = table.controls.get(step.escalate_control)
    if control is None or step.escalate_level not in control.levels:
        return None
    esc = Step(control, step.escalate_level, control.key_label)
    return PlannedStep("escalation", -1, esc, step.escalate_key or "", None)
