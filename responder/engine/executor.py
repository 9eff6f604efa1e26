"""Execute recorded steps: one key at a time, retried, escalated on failure, resumed on start.

A step row is written with its intent before anything is called. The executor calls the
target with the step's stored Idempotency-Key, then records the outcome. A crash anywhere
in between leaves the step pending; the next start calls again with the same key, which
the target answers without applying twice.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import asyncpg
import structlog

from responder.actions.admin_http import AdminClient, CallFailed, CallRecord
from responder.engine.planner import PlannedStep
from responder.engine.recorder import containment_failed, new_step, step_entry
from responder.errors import ActionPermanentError, StoreError
from responder.metrics import Metrics
from responder.rules.table import Control, RuleTable, Step
from responder.store.actionlog import ChainAppender, Entry
from responder.store.db import Conn
from responder.store.steps import CloseStep, CloseSteps, StepRow, insert_steps, pending_steps
from responder.store.writer import Unit, Writer

log = structlog.get_logger("responder.engine")

STORE_ERRORS = (StoreError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
KeyId = tuple[str, str]
T = TypeVar("T")


class Executor:
    """Runs steps: incidents in parallel, each incident's steps in order, one key at a time."""

    def __init__(self, pool: asyncpg.Pool, writer: Writer, rules: Callable[[], RuleTable],
                 client: AdminClient, metrics: Metrics, *, deadline_s: float,
                 max_concurrency: int = 64, store_retry_s: float = 1.0,
                 close_linger_s: float = 0.02) -> None:
        self._pool = pool
        self._writer = writer
        self._rules = rules
        self._client = client
        self._metrics = metrics
        self._deadline_s = deadline_s
        self._store_retry_s = store_retry_s
        self._slots = asyncio.Semaphore(max_concurrency)
        self._queues: dict[int, deque[StepRow]] = {}
        self._known: set[int] = set()
        self._unchecked: set[int] = set()
        # Keep strong references so running tasks are not garbage-collected.
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._locks: weakref.WeakValueDictionary[KeyId, asyncio.Lock] = (
            weakref.WeakValueDictionary())
        # Levels this process has confirmed; steps planned here were checked against the
        # store in their own transaction, so only raises made since then can make them moot.
        self._confirmed: dict[KeyId, tuple[int, str]] = {}
        self._closing = False
        # Outcomes of applied steps are written in small groups a few ms later: the call is
        # done and its level confirmed here, and until the outcome commits the step stays
        # pending in the store, so a crash meanwhile only repeats an idempotent call.
        self._close_linger_s = close_linger_s
        self._lazy_closes: list[CloseStep] = []
        self._flushes: set[asyncio.Task[None]] = set()

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    def submit(self, steps: Iterable[StepRow], *, checked: bool = True) -> None:
        """Queue steps for execution; each incident's steps run in the order given.

        ``checked`` steps were planned against the store's held levels in the transaction
        that wrote them; others (found pending at start) are checked against the store.
        """
        if self._closing:
            return
        for step in steps:
            if step.id in self._known:
                continue
            self._known.add(step.id)
            if not checked:
                self._unchecked.add(step.id)
            self._queues.setdefault(step.incident_id, deque()).append(step)
            if step.incident_id not in self._tasks:
                task = asyncio.create_task(self._run_incident(step.incident_id),
                                           name=f"incident-{step.incident_id}")
                self._tasks[step.incident_id] = task
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        incident_id = int(task.get_name().removeprefix("incident-"))
        self._tasks.pop(incident_id, None)
        for step in self._queues.pop(incident_id, ()):
            self._known.discard(step.id)
            self._unchecked.discard(step.id)
        if not task.cancelled() and (error := task.exception()) is not None:
            # Never leave an incident stuck: its steps stay pending and the sweeper retries.
            log.error("incident task crashed; the sweeper will retry", incident=incident_id,
                      error=repr(error))

    async def recover(self) -> int:
        """Queue every pending step that no task here is working on."""
        async with self._pool.acquire() as conn:
            steps = [s for s in await pending_steps(conn) if s.id not in self._known]
        if steps:
            log.info("resuming pending steps", steps=len(steps))
        self.submit(steps, checked=False)
        return len(steps)

    async def sweep(self, interval_s: float) -> None:
        """Periodically pick up pending steps nobody is working on (after a crashed task)."""
        while not self._closing:
            await asyncio.sleep(interval_s)
            try:
                await self.recover()
            except STORE_ERRORS as e:
                log.warning("sweep skipped: store unavailable", error=str(e))

    async def drain(self, timeout_s: float) -> list[str]:
        """Wait for running work up to the deadline, then cancel the rest; return its names.

        Outcomes still waiting to be written are written before this returns.
        """
        self._closing = True
        tasks = list(self._tasks.values())
        pending: set[asyncio.Task[None]] = set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        self._start_flush()
        await asyncio.wait(set(self._flushes), timeout=timeout_s)
        return sorted(t.get_name() for t in pending)

    async def _run_incident(self, incident_id: int) -> None:
        queue = self._queues[incident_id]
        while queue:
            step = queue[0]
            try:
                await self._execute(step)
            except STORE_ERRORS as e:
                if self._closing:
                    return
                log.warning("store unavailable while executing; will retry", step=step.id,
                            error=str(e))
                await asyncio.sleep(self._store_retry_s)
                continue
            queue.popleft()
            if not any(c.step.id == step.id for c in self._lazy_closes):
                self._known.discard(step.id)

    def _lock(self, key: KeyId) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    async def _execute(self, step: StepRow) -> None:
        key = (step.control, step.key)
        async with self._slots, self._lock(key):
            self._metrics.steps_inflight.inc()
            try:
                await self._execute_locked(step, key)
            finally:
                self._metrics.steps_inflight.dec()

    async def _held_rank(self, step: StepRow, key: KeyId) -> tuple[int, str] | None:
        if key in self._confirmed:
            return self._confirmed[key]
        if step.id not in self._unchecked:
            return None
        self._unchecked.discard(step.id)
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT level, rank FROM control_levels"
                                      " WHERE control = $1 AND key = $2", *key)
        return (row["rank"], row["level"]) if row is not None else None

    async def _execute_locked(self, step: StepRow, key: KeyId) -> None:
        held = await self._held_rank(step, key)
        if held is not None and held[0] >= step.rank:
            await self._record(_finish(step, "already_contained", {"held": held[1]}))
            return
        table = self._rules()
        try:
            call = await self._client.apply(_control(table, step), step.key, step.level,
                                            step.idempotency_key, self._deadline_s)
        except (CallFailed, ActionPermanentError) as e:
            record = e.record if isinstance(e, CallFailed) else None
            log.warning("step failed", step=step.id, control=step.control, key=step.key,
                        to_level=step.level, error=str(e))
            self._metrics.actions.labels(step.control, "failed").inc()
            escalation = await self._record(self._fail(step, str(e), record, table))
            if escalation is not None:
                self._queues[step.incident_id].append(escalation)
                self._known.add(escalation.id)
            return
        self._metrics.actions.labels(step.control, "applied").inc()
        log.info("step applied", step=step.id, control=step.control, key=step.key,
                 to_level=step.level)
        if step.rank > self._confirmed.get(key, (-1, ""))[0]:
            self._confirmed[key] = (step.rank, step.level)
        self._close_later(CloseStep(step, "applied", {"call": call.to_json()}))

    def _close_later(self, close: CloseStep) -> None:
        if not self._lazy_closes:
            asyncio.get_running_loop().call_later(self._close_linger_s, self._start_flush)
        self._lazy_closes.append(close)

    def _start_flush(self) -> None:
        task = asyncio.create_task(self._flush_closes(), name="flush-outcomes")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush_closes(self) -> None:
        closes, self._lazy_closes = self._lazy_closes, []
        if not closes:
            return
        try:
            await self._writer.submit(CloseSteps(closes))
        except STORE_ERRORS as e:
            # The steps stay pending in the store; the sweeper will run them again.
            log.warning("outcomes not recorded yet; will retry", steps=len(closes), error=str(e))
        finally:
            for close in closes:
                self._known.discard(close.step.id)

    async def _record(self, unit: Unit[T]) -> T:
        # Shielded: a step's outcome must be written even if shutdown cancels the task.
        return await asyncio.shield(self._writer.submit(unit))

    def _fail(self, step: StepRow, reason: str, call: CallRecord | None,
              table: RuleTable) -> Unit[StepRow | None]:
        detail = {"error": reason, "call": call.to_json() if call else None}
        escalation = _escalation_for(step, table)
        metrics = self._metrics

        async def unit(conn: Conn, chain: ChainAppender) -> StepRow | None:
            if not await CloseStep(step, "failed", detail)(conn, chain):
                return None
            if escalation is None:
                what = "escalation failed" if step.kind == "escalation" else "no escalation"
                chain.add(containment_failed(
                    step.incident_id, step.rule_id,
                    f"{what}: {step.control}[{step.key}] -> {step.level}: {reason}", metrics))
                return None
            chain.add(Entry("escalation", incident_id=step.incident_id,
                                     rule_id=step.rule_id, control=step.escalate_control,
                                     key=step.escalate_key,
                                     detail={"after_step": step.id,
                                             "level": step.escalate_level}))
            [ins] = await insert_steps(conn, [new_step(step.incident_id, step.rule_id,
                                                       escalation)])
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


def _finish(step: StepRow, outcome: str, detail: Mapping[str, object]) -> Unit[bool]:
    return CloseStep(step, outcome, detail)
