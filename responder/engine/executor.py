"""Execute recorded steps: one key at a time, retried, escalated on failure, resumed on start.

A step row is written with its intent before anything is called. The executor calls the
target with the step's stored Idempotency-Key, then records the outcome. A crash anywhere
in between leaves the step pending; the next start calls again with the same key, which
the target answers without applying twice.

Levels never go down: under the per-key lock each step reads what the store holds for its
key, and a pending step of higher rank on the same key that was already claimed (so may have
reached the target) counts as held. That matters after a crash, when a higher step may
already be applied on the target without its outcome written: the lower step must not run
after it.

Several replicas may share the store. Before calling, a replica claims the step with a
lease taken from the database clock (store/claims.py) and renews it while the call and
its read-back run. A step, or a key, claimed by another replica is left to it; when its
lease runs out (the replica died), the sweep of another replica takes the step over,
records that, and calls with the same Idempotency-Key.

Every call obeys the automation mode at the moment it would go out: outside enforce
(paused, dry-run, break-glass) a step is left pending, its early claim given back, and
the sweep leaves pending steps alone; when enforce resumes they run (engine/resume.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

import asyncpg
import structlog

from responder.actions.admin_http import AdminClient, CallFailed
from responder.engine import audit
from responder.engine.planner import PlannedStep
from responder.engine.recorder import containment_failed, new_step, step_entry
from responder.errors import ActionPermanentError, StoreError
from responder.metrics import Metrics
from responder.rules.table import Control, RuleTable, Step
from responder.store.actionlog import ChainAppender, Entry
from responder.store.claims import (
    Claim,
    Refusal,
    claim_step,
    give_back,
    let_go,
    renew_claim,
)
from responder.store.db import Conn
from responder.store.steps import CloseStep, StepRow, insert_steps, pending_steps
from responder.store.writer import Unit, Writer

log = structlog.get_logger("responder.engine")

STORE_ERRORS = (StoreError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
T = TypeVar("T")

HELD_SQL = """
SELECT s.status, c.level AS held_level, c.rank AS held_rank, p.id AS higher_id,
       p.level AS higher_level
FROM steps s
LEFT JOIN control_levels c ON c.control = s.control AND c.key = s.key
LEFT JOIN LATERAL (
    SELECT id, level FROM steps h
    WHERE h.control = s.control AND h.key = s.key AND h.status = 'pending'
      AND h.rank > s.rank
      -- Only a step that was claimed can have reached the target. One never claimed must
      -- not stand in for the lower step: if it then failed, the key would stay uncontained.
      AND h.claims > 0
    ORDER BY h.rank DESC LIMIT 1
) p ON true
WHERE s.id = $1
"""


LOCKED_RETRIES = 20
LOCKED_PAUSE_S = 0.025
"""A claim refused only because the key's lock is held (usually a batch recording a step
on it, for milliseconds) is tried again this often before being left to the sweep."""


class _KeyLock(asyncio.Lock):
    """The per-key lock, counting how often it was taken: a step claimed while it was
    recorded may skip its claim and held-level reads only if nothing else took the key's
    lock since (no other step, person or drift repair touched the key here)."""

    taken = 0

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        self.taken += 1
        return True


@dataclass(frozen=True)
class _Early:
    """A step claimed while recorded: the key lock's count then, and when."""

    lock: _KeyLock
    taken: int
    at: float


@dataclass(frozen=True)
class _Held:
    """What the store holds for a step's key (HELD_SQL), read right after its claim."""

    status: str
    held_level: str | None = None
    held_rank: int | None = None
    higher_id: int | None = None
    higher_level: str | None = None


@dataclass
class _Lease:
    """Set by the renewer when the step's claim could not be kept."""

    lost: bool = False
    held_back: bool = False
    """The mode changed after the claim: no call was made, the claim was given back."""


class Executor:
    """Runs steps: incidents in parallel, each incident's steps in order, one key at a time."""

    def __init__(self, pool: asyncpg.Pool, writer: Writer, rules: Callable[[], RuleTable],
                 client: AdminClient, metrics: Metrics, *, deadline_s: float,
                 max_concurrency: int = 64, store_retry_s: float = 1.0,
                 read_back_s: float = 3.0,
                 changed: Callable[[set[int]], None] | None = None,
                 replica: str = "local", lease_s: float = 10.0,
                 may_act: Callable[[], bool] = lambda: True) -> None:
        self._pool = pool
        self._writer = writer
        self._rules = rules
        self._client = client
        self._metrics = metrics
        self._deadline_s = deadline_s
        self._store_retry_s = store_retry_s
        self._read_back_s = read_back_s
        self._changed = changed
        self.replica = replica
        self._lease_s = lease_s
        self._may_act = may_act
        # Takeovers claimed but not yet written to the action log: a retry after a store
        # error finds the claim already ours and must still record whose lease it replaced.
        self._unrecorded: dict[int, Claim] = {}
        self._slots = asyncio.Semaphore(max_concurrency)
        self._queues: dict[int, deque[StepRow]] = {}
        self._known: set[int] = set()
        # Keep strong references so running tasks are not garbage-collected.
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._locks: weakref.WeakValueDictionary[tuple[str, str], _KeyLock] = (
            weakref.WeakValueDictionary())
        self._early: dict[int, _Early] = {}
        self._closing = False

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    @property
    def closing(self) -> bool:
        return self._closing

    def submit(self, steps: Iterable[StepRow], recorded_from: float | None = None) -> None:
        """Queue steps for execution; each incident's steps run in the order given.
        ``recorded_from``: the monotonic time before the steps' recording began, which any
        lease taken while recording them starts after."""
        if self._closing:
            return
        for step in steps:
            if step.id in self._known:
                continue
            self._known.add(step.id)
            if step.preclaimed:
                lock = self._lock((step.control, step.key))  # kept alive by the entry
                at = time.monotonic() if recorded_from is None else recorded_from
                self._early[step.id] = _Early(lock, lock.taken, at)
            self._queues.setdefault(step.incident_id, deque()).append(step)
            if step.incident_id not in self._tasks:
                task = asyncio.create_task(self._run_incident(step.incident_id),
                                           name=f"incident-{step.incident_id}")
                self._tasks[step.incident_id] = task
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        incident_id = int(task.get_name().removeprefix("incident-"))
        if self._tasks.get(incident_id) is not task:
            return  # it ended normally and a newer task may already own the incident
        # Cancelled or crashed: forget its queue; the steps stay pending in the store and
        # the sweeper picks them up again, so an incident is never stuck.
        del self._tasks[incident_id]
        for step in self._queues.pop(incident_id, ()):
            self._forget(step.id)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("incident task crashed; the sweeper will retry", incident=incident_id,
                      error=repr(error))

    async def recover(self) -> int:
        """Queue every pending step that no task here is working on (none while automation
        may not act: they wait in the store for enforce)."""
        if not self._may_act():
            return 0
        async with self._pool.acquire() as conn:
            steps = await pending_steps(conn, self.replica)
        # A step that finished while the query ran is filtered by the status check in
        # _held, so reading _known after the query is safe.
        fresh = [s for s in steps if s.id not in self._known]
        if fresh:
            log.info("resuming pending steps", steps=len(fresh))
        self.submit(fresh)
        return len(fresh)

    async def sweep(self, interval_s: float) -> None:
        """Periodically pick up pending steps nobody is working on: after a crashed task
        here, or a replica that died and whose leases have run out."""
        while not self._closing:
            await asyncio.sleep(interval_s)
            try:
                await self.recover()
            except STORE_ERRORS as e:
                log.warning("sweep skipped: store unavailable", error=str(e))

    async def drain(self, timeout_s: float) -> list[str]:
        """Wait for running work up to the deadline, then cancel the rest; return its names."""
        self._closing = True
        tasks = list(self._tasks.values())
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)
        return sorted(t.get_name() for t in pending)

    async def let_go(self) -> int:
        """End this replica's live leases so another replica can take over without waiting."""
        async with self._pool.acquire() as conn:
            return await let_go(conn, self.replica)

    def stand_down(self) -> None:
        """This replica lost its name (engine/liveness.py): cancel the steps in flight."""
        for task in list(self._tasks.values()):
            task.cancel()

    async def _run_incident(self, incident_id: int) -> None:
        queue = self._queues[incident_id]
        while queue:
            step = queue[0]
            try:
                is_ours = await self._execute(step)
            except STORE_ERRORS as e:
                if self._closing:
                    return
                log.warning("store unavailable while executing; will retry", step=step.id,
                            error=str(e))
                await asyncio.sleep(self._store_retry_s)
                continue
            if not is_ours:
                # Another replica holds this step or its key: leave the incident to it.
                # The sweep looks again, and takes over only once that lease has run out.
                for later in queue:
                    self._forget(later.id)
                queue.clear()
                break
            queue.popleft()
            self._known.discard(step.id)
        # No await between the empty check and this cleanup: submit() cannot slip a step
        # into a queue that is about to be forgotten.
        del self._tasks[incident_id]
        del self._queues[incident_id]
        if self._changed is not None:
            self._changed({incident_id})

    def _forget(self, step_id: int) -> None:
        """Drop a step this task will not run; the sweep may queue it again."""
        self._known.discard(step_id)
        self._early.pop(step_id, None)

    def key_lock(self, control: str, key: str) -> asyncio.Lock:
        """The lock that serialises every change to one control key, automatic or manual."""
        return self._lock((control, key))

    def _lock(self, key: tuple[str, str]) -> _KeyLock:
        lock = self._locks.get(key)
        if lock is None:
            lock = _KeyLock()
            self._locks[key] = lock
        return lock

    async def _execute(self, step: StepRow) -> bool:
        """Run one step; False if another replica holds it (or its key) under a live lease."""
        with structlog.contextvars.bound_contextvars(correlation_id=step.correlation_id):
            return await self._execute_bound(step)

    async def _execute_bound(self, step: StepRow) -> bool:
        early = self._early.pop(step.id, None)
        lock = self._lock((step.control, step.key))
        async with self._slots, lock:
            if not self._may_act():
                await self._hold_back(step, is_claimed=early is not None)
                return False
            claim: Claim | Refusal
            first_renewal_s = self._lease_s / 3
            if early is not None and self._still_early(early, lock):
                # The lease began when it was recorded: renew on that lease's schedule.
                first_renewal_s = max(0.0, early.at + self._lease_s / 3 - time.monotonic())
                # Claimed by the transaction that recorded it, alone on its key, and
                # nothing has touched the key since: what a claim and a held-level read
                # would return is known, so the call goes out without them.
                claim = Claim(step.id, None, None, 1)
                held: _Held | None = _Held("pending", step.held_before)
            else:
                claim, held = await self._claim(step)
            if claim == "closed":
                return True
            if claim in ("busy", "locked"):
                log.info("step left to the replica holding its lease", step=step.id,
                         control=step.control, key=step.key)
                return False
            assert isinstance(claim, Claim)
            await self._record_takeover(step, claim)
            self._metrics.steps_inflight.inc()
            try:
                async with self._leased(step, first_renewal_s) as lease:
                    await self._execute_claimed(step, held, lease)
            finally:
                self._metrics.steps_inflight.dec()
            return not (lease.lost or lease.held_back)

    async def _hold_back(self, step: StepRow, *, is_claimed: bool) -> None:
        """Leave a step pending while automation may not act; a claim on it is given back
        at once, so a person holding the controls (break-glass) need not wait it out."""
        log.warning("automation not enforcing: step left pending until enforce resumes",
                    step=step.id, control=step.control, key=step.key)
        if is_claimed:
            async with self._pool.acquire() as conn:
                await give_back(conn, step.id, self.replica)

    def _still_early(self, early: _Early, lock: _KeyLock) -> bool:
        """The early claim holds if only this task took the key's lock since it was recorded
        and its lease (from the recording transaction) has most of its time left."""
        return (early.lock is lock and lock.taken == early.taken + 1
                and time.monotonic() - early.at < self._lease_s / 2)

    async def _claim(self, step: StepRow) -> tuple[Claim | Refusal, _Held | None]:
        for _ in range(LOCKED_RETRIES):
            async with self._pool.acquire() as conn:
                claim = await claim_step(conn, step.id, self.replica, self._lease_s)
                # Read after the claim, in a statement of its own: it must see every
                # outcome committed before the claim was granted.
                row = await conn.fetchrow(HELD_SQL, step.id) if isinstance(claim, Claim) \
                    else None
                held = _Held(**dict(row)) if row is not None else None
            if claim != "locked":
                break
            await asyncio.sleep(LOCKED_PAUSE_S)
        return claim, held

    async def _record_takeover(self, step: StepRow, claim: Claim) -> None:
        """Write down, before any call, that this replica took over another's lease."""
        if claim.is_takeover:
            self._unrecorded[step.id] = claim
        owed = self._unrecorded.get(step.id)
        if owed is None:
            return
        until = owed.previous_until.isoformat() if owed.previous_until else None
        entry = Entry("step_taken_over", incident_id=step.incident_id, rule_id=step.rule_id,
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

    @contextlib.asynccontextmanager
    async def _leased(self, step: StepRow, first_s: float) -> AsyncIterator[_Lease]:
        """Renew the step's lease while the call and read-back run."""
        lease = _Lease()
        renewer = asyncio.create_task(self._renew(step, lease, first_s),
                                      name=f"lease-{step.id}")
        try:
            yield lease
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew(self, step: StepRow, lease: _Lease, first_s: float) -> None:
        wait_s = first_s
        while True:
            await asyncio.sleep(wait_s)
            wait_s = self._lease_s / 3
            try:
                async with self._pool.acquire() as conn:
                    is_held = await renew_claim(conn, step.id, self.replica, self._lease_s)
            except STORE_ERRORS as e:
                log.warning("lease not renewed: store unavailable", step=step.id, error=str(e))
                continue
            if not is_held:
                # Once the lease has run out another replica, or a person holding the key,
                # may act on it: this replica no longer writes the step's outcome. The new
                # holder calls again with the same Idempotency-Key and records it.
                lease.lost = True
                log.warning("lease lost while calling; the outcome is left to the next"
                            " holder", step=step.id)
                return

    async def _execute_claimed(self, step: StepRow, held: _Held | None,
                               lease: _Lease) -> None:
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
            call = await self._client.apply(control, step.key, step.level,
                                            step.idempotency_key, self._deadline_s,
                                            audit.for_step(step))
        except (CallFailed, ActionPermanentError) as e:
            if lease.lost:
                return
            record = e.record if isinstance(e, CallFailed) else None
            await self._failed(step, str(e), {"call": record.to_json() if record else None},
                               table)
            return
        if lease.lost:
            return
        verified: bool | None = None
        # "before" is the level responder held; the target is not read before the call,
        # which would only delay containment. "after" is what the read-back saw.
        detail: dict[str, object] = {"call": call.to_json(),
                                     "before": held.held_level or control.levels[0]}
        if control.is_readable:
            verified, observed, reads = await self._client.verify(
                control, step.key, step.level, self._read_back_s)
            detail["read_back"] = [r.to_json() for r in reads]
            detail["after"] = observed
            if not verified:
                reason = (f"read-back: the target reports {observed or 'no level'}, not"
                          f" {step.level}")
                if not lease.lost:
                    await self._failed(step, reason, detail, table)
                return
        if lease.lost:
            return
        self._metrics.actions.labels(step.control, "applied").inc()
        log.info("step applied", step=step.id, control=step.control, key=step.key,
                 to_level=step.level, verified=verified)
        await self._record(CloseStep(step, "applied", detail, verified, self.replica))

    async def _failed(self, step: StepRow, reason: str, detail: Mapping[str, object],
                      table: RuleTable) -> None:
        log.warning("step failed", step=step.id, control=step.control, key=step.key,
                    to_level=step.level, error=reason)
        self._metrics.actions.labels(step.control, "failed").inc()
        escalation = await self._record(self._fail(step, reason, detail, table))
        if escalation is not None:
            self._queues[step.incident_id].append(escalation)
            self._known.add(escalation.id)

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
            chain.add(Entry("escalation", incident_id=step.incident_id, rule_id=step.rule_id,
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
