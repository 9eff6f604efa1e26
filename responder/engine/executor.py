"""Execute recorded steps: incidents in parallel, each incident's steps in order, resumed on
start and picked up again by a sweep.

A step row is written with its intent before anything is called. The executor calls the
target with the step's stored Idempotency-Key, then records the outcome. A crash anywhere
in between leaves the step pending; the next start calls again with the same key, which
the target answers without applying twice. Running one step is engine/runner.py; its lease
while it runs is engine/leases.py; the call itself is engine/levels.py.

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
import time
from collections import deque
from collections.abc import Callable, Iterable

import structlog

from responder.actions.admin_http import AdminClient
from responder.engine.leases import Early, Leases
from responder.engine.levels import KeyLocks
from responder.engine.runner import StepRunner
from responder.errors import StoreError
from responder.metrics import Metrics
from responder.rules.table import RuleTable
from responder.store.steps import StepRow, pending_for
from responder.store.types import Pool
from responder.store.writer import Writer

log = structlog.get_logger("responder.engine")


class Executor:
    """Runs steps: incidents in parallel, each incident's steps in order, one key at a time."""

    def __init__(self, pool: Pool, writer: Writer, rules: Callable[[], RuleTable],
                 client: AdminClient, metrics: Metrics, *, deadline_s: float,
                 max_concurrency: int = 64, store_retry_s: float = 1.0,
                 read_back_s: float = 3.0,
                 changed: Callable[[set[int]], None] | None = None,
                 replica: str = "local", lease_s: float = 10.0,
                 may_act: Callable[[], bool] = lambda: True) -> None:
        self._pool = pool
        self._store_retry_s = store_retry_s
        self._changed = changed
        self.replica = replica
        self._may_act = may_act
        self.locks = KeyLocks()
        """Every change to a control key in this process holds its lock: steps, people's
        changes and drift repair."""
        self._leases = Leases(pool, replica, lease_s)
        self._runner = StepRunner(pool, writer, rules, client, metrics, self._leases,
                                  self.locks, deadline_s=deadline_s, read_back_s=read_back_s,
                                  max_concurrency=max_concurrency, may_act=may_act,
                                  escalate=self._escalate)
        self._queues: dict[int, deque[StepRow]] = {}
        self._known: set[int] = set()
        # Keep strong references so running tasks are not garbage-collected.
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._early: dict[int, Early] = {}
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
                lock = self.locks.lock(step.control, step.key)  # kept alive by the entry
                at = time.monotonic() if recorded_from is None else recorded_from
                self._early[step.id] = Early(lock, lock.taken, at)
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
        steps = await pending_for(self._pool, self.replica)
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
            except StoreError as e:
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
        return await self._leases.let_go()

    def stand_down(self) -> None:
        """This replica lost its name (engine/liveness.py): cancel the steps in flight."""
        for task in list(self._tasks.values()):
            task.cancel()

    async def _run_incident(self, incident_id: int) -> None:
        queue = self._queues[incident_id]
        while queue:
            step = queue[0]
            try:
                is_ours = await self._runner.run(step, self._early.pop(step.id, None))
            except StoreError as e:
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
        return self.locks.lock(control, key)

    def _escalate(self, escalation: StepRow) -> None:
        """A failed step's escalation runs next in its incident's queue."""
        self._queues[escalation.incident_id].append(escalation)
        self._known.add(escalation.id)
