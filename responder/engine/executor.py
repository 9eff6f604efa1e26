"""Execute recorded steps: one key at a time, retried, escalated on failure, resumed on start.

A step row is written with its intent before anything is called. The executor calls the
target with the step's stored Idempotency-Key, then records the outcome. A crash anywhere
in between leaves the step pending; the next start calls again with the same key, which
the target answers without applying twice.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import asyncpg
import structlog

from responder.actions.admin_http import AdminClient, CallFailed, CallRecord
from responder.engine.planner import PlannedStep
from responder.engine.recorder import plan_step, record_containment_failed
from responder.errors import ActionPermanentError, StoreError
from responder.metrics import Metrics
from responder.rules.table import Control, RuleTable, Step
from responder.store.actionlog import ChainAppender, Entry
from responder.store.db import Conn
from responder.store.writer import Unit, Writer

log = structlog.get_logger("responder.engine")


@dataclass(frozen=True)
class StepRow:
    id: int
    incident_id: int
    rule_id: str
    kind: str
    control: str
    key: str
    level: str
    rank: int
    escalate_control: str | None
    escalate_key: str | None
    escalate_level: str | None
    idempotency_key: str


PENDING = """
SELECT s.id, s.incident_id, i.rule_id, s.kind, s.control, s.key, s.level, s.rank,
       s.escalate_control, s.escalate_key, s.escalate_level, s.idempotency_key
FROM steps s JOIN incidents i ON i.id = s.incident_id
WHERE s.incident_id = $1 AND s.status = 'pending' ORDER BY s.id
"""


class Executor:
    """Runs pending steps: incidents in parallel, each incident's steps in order."""

    def __init__(self, pool: asyncpg.Pool, writer: Writer, rules: Callable[[], RuleTable],
                 client: AdminClient, metrics: Metrics, *, deadline_s: float,
                 max_concurrency: int = 64, store_retry_s: float = 1.0) -> None:
        self._pool = pool
        self._writer = writer
        self._rules = rules
        self._client = client
        self._metrics = metrics
        self._deadline_s = deadline_s
        self._store_retry_s = store_retry_s
        self._slots = asyncio.Semaphore(max_concurrency)
        # Keep strong references so running tasks are not garbage-collected.
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._dirty: set[int] = set()
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary())
        self._closing = False

    def wake(self, incident_ids: set[int] | list[int]) -> None:
        """Make sure each incident's pending steps get executed."""
        if self._closing:
            return
        for incident_id in incident_ids:
            if incident_id in self._tasks:
                self._dirty.add(incident_id)
                continue
            task = asyncio.create_task(self._run_incident(incident_id),
                                       name=f"incident-{incident_id}")
            self._tasks[incident_id] = task
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        incident_id = int(task.get_name().removeprefix("incident-"))
        self._tasks.pop(incident_id, None)
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            # Never leave an incident stuck: its steps stay pending and the sweeper retries.
            log.error("incident task crashed; will retry", incident=incident_id,
                      error=repr(error))
            self._dirty.discard(incident_id)
            return
        if incident_id in self._dirty:
            self._dirty.discard(incident_id)
            self.wake([incident_id])

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    async def recover(self) -> int:
        """Wake every incident left with pending steps by an earlier run."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT DISTINCT incident_id FROM steps"
                                    " WHERE status = 'pending'")
        ids = [r["incident_id"] for r in rows if r["incident_id"] not in self._tasks]
        if ids:
            log.info("resuming pending steps", incidents=len(ids))
        self.wake(ids)
        return len(ids)

    async def sweep(self, interval_s: float) -> None:
        """Periodically pick up pending steps no task is working on (after a crashed task)."""
        while not self._closing:
            await asyncio.sleep(interval_s)
            try:
                await self.recover()
            except (StoreError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
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
            await asyncio.wait(pending, timeout=5)
        return sorted(t.get_name() for t in pending)

    async def _run_incident(self, incident_id: int) -> None:
        while True:
            self._dirty.discard(incident_id)
            try:
                async with self._pool.acquire() as conn:
                    rows = await conn.fetch(PENDING, incident_id)
                for row in rows:
                    await self._execute(StepRow(**dict(row)))
            except (StoreError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning("store unavailable while executing; will retry",
                            incident=incident_id, error=str(e))
                if self._closing:
                    return
                await asyncio.sleep(self._store_retry_s)
                self._dirty.add(incident_id)
            if incident_id not in self._dirty or self._closing:
                return

    def _lock(self, control: str, key: str) -> asyncio.Lock:
        lock = self._locks.get((control, key))
        if lock is None:
            lock = asyncio.Lock()
            self._locks[(control, key)] = lock
        return lock

    async def _execute(self, step: StepRow) -> None:
        async with self._slots, self._lock(step.control, step.key):
            self._metrics.steps_inflight.inc()
            try:
                await self._execute_locked(step)
            finally:
                self._metrics.steps_inflight.dec()

    async def _execute_locked(self, step: StepRow) -> None:
        async with self._pool.acquire() as conn:
            held = await conn.fetchrow("SELECT level, rank FROM control_levels"
                                       " WHERE control = $1 AND key = $2",
                                       step.control, step.key)
        if held is not None and held["rank"] >= step.rank:
            await self._record(_finish(step, "already_contained", {"held": held["level"]}))
            return
        table = self._rules()
        try:
            call = await self._client.apply(self._control(table, step), step.key, step.level,
                                            step.idempotency_key, self._deadline_s)
        except (CallFailed, ActionPermanentError) as e:
            record = e.record if isinstance(e, CallFailed) else None
            log.warning("step failed", step=step.id, control=step.control, key=step.key,
                        to_level=step.level, error=str(e))
            self._metrics.actions.labels(step.control, "failed").inc()
            await self._record(self._fail(step, str(e), record, table))
            self._dirty.add(step.incident_id)  # an escalation step may now be pending
            return
        self._metrics.actions.labels(step.control, "applied").inc()
        log.info("step applied", step=step.id, control=step.control, key=step.key,
                 to_level=step.level)
        await self._record(_finish(step, "applied", {"call": call.to_json()}))

    @staticmethod
    def _control(table: RuleTable, step: StepRow) -> Control:
        control = table.controls.get(step.control)
        if control is None:
            raise ActionPermanentError(f"control {step.control!r} is not in the rule table")
        return control

    async def _record(self, unit: Unit[None]) -> None:
        # Shielded: a step's outcome must be written even if shutdown cancels the task.
        await asyncio.shield(self._writer.submit(unit))

    def _fail(self, step: StepRow, reason: str, call: CallRecord | None,
              table: RuleTable) -> Unit[None]:
        detail = {"error": reason, "call": call.to_json() if call else None}
        escalation = None
        if step.kind == "step" and step.escalate_control and step.escalate_level:
            control = table.controls.get(step.escalate_control)
            if control is not None and step.escalate_level in control.levels:
                esc = Step(control, step.escalate_level, control.key_label)
                escalation = PlannedStep("escalation", -1, esc, step.escalate_key or "", None)
        metrics = self._metrics

        async def unit(conn: Conn, chain: ChainAppender) -> None:
            await _close_step(conn, chain, step, "failed", detail)
            if escalation is not None:
                await chain.append(Entry("escalation", incident_id=step.incident_id,
                                         rule_id=step.rule_id, control=step.escalate_control,
                                         key=step.escalate_key,
                                         detail={"after_step": step.id,
                                                 "level": step.escalate_level}))
                await plan_step(conn, chain, step.incident_id, step.rule_id, escalation)
            else:
                what = "escalation failed" if step.kind == "escalation" else "no escalation"
                await record_containment_failed(
                    chain, step.incident_id, step.rule_id,
                    f"{what}: {step.control}[{step.key}] -> {step.level}: {reason}", metrics)

        return unit


def _finish(step: StepRow, outcome: str, detail: Mapping[str, object]) -> Unit[None]:
    async def unit(conn: Conn, chain: ChainAppender) -> None:
        await _close_step(conn, chain, step, outcome, detail)
        if outcome == "applied":
            await conn.execute(
                "INSERT INTO control_levels (control, key, level, rank, incident_id)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (control, key) DO UPDATE SET"
                " level = EXCLUDED.level, rank = EXCLUDED.rank,"
                " incident_id = EXCLUDED.incident_id, updated_at = now()"
                " WHERE control_levels.rank < EXCLUDED.rank",
                step.control, step.key, step.level, step.rank, step.incident_id,
            )

    return unit


async def _close_step(conn: Conn, chain: ChainAppender, step: StepRow,
                      outcome: str, detail: Mapping[str, object]) -> None:
    status = "failed" if outcome == "failed" else "done"
    updated = await conn.fetchval(
        "UPDATE steps SET status = $2, updated_at = now() WHERE id = $1 AND status = 'pending'"
        " RETURNING id", step.id, status)
    if updated is None:
        return  # already closed by an earlier attempt
    await chain.append(Entry("outcome", incident_id=step.incident_id, rule_id=step.rule_id,
                             control=step.control, key=step.key, step_id=step.id,
                             detail={"status": outcome, "kind": step.kind, "level": step.level,
                                     "idempotency_key": step.idempotency_key, **detail}))
