"""Drift repair: read every contained key back from its target and re-apply what was lost.

A target that restarted and forgot, or a person who bypassed responder, leaves the target
below the level responder holds. Each pass reads every held key whose control declares a
read; where the target reports less, the held level is applied again (new Idempotency-Key),
recorded as ``drift_corrected`` and logged at error level so someone is paged.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import structlog

from responder.actions.admin_http import AdminClient, CallFailed
from responder.engine import audit
from responder.engine.executor import STORE_ERRORS, Executor
from responder.errors import ActionError
from responder.metrics import Metrics
from responder.rules.table import Control, RuleTable
from responder.store.actionlog import ChainAppender, Entry
from responder.store.claims import KeyBusy, hold_key
from responder.store.db import Conn
from responder.store.writer import Writer

log = structlog.get_logger("responder.reconciler")

HELD_SQL = """
SELECT control, key, level, rank, incident_id FROM control_levels WHERE rank > 0
ORDER BY control, key
"""


@dataclass
class PassReport:
    """What one pass found."""

    checked: int = 0
    corrected: int = 0
    failed: int = 0
    unreadable: int = 0
    busy: int = 0
    """Keys below their held level left for the next pass: being changed elsewhere."""
    seconds: float = 0.0
    corrections: list[tuple[str, str]] = field(default_factory=list)


class Reconciler:
    """Reads held levels back from targets on an interval and repairs drift."""

    def __init__(self, pool: asyncpg.Pool, writer: Writer, rules: Callable[[], RuleTable],
                 client: AdminClient, executor: Executor, metrics: Metrics, *,
                 deadline_s: float, concurrency: int = 16) -> None:
        self._pool = pool
        self._writer = writer
        self._rules = rules
        self._client = client
        self._executor = executor
        self._metrics = metrics
        self._deadline_s = deadline_s
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                report = await self.pass_once()
            except STORE_ERRORS as e:
                log.warning("reconcile pass skipped: store unavailable", error=str(e))
                continue
            if report.corrected or report.failed:
                log.info("reconcile pass", checked=report.checked, corrected=report.corrected,
                         failed=report.failed, seconds=round(report.seconds, 3))

    async def pass_once(self) -> PassReport:
        """Check every held key once; correct any the target reports lower."""
        started = time.monotonic()
        report = PassReport()
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(HELD_SQL)
        table = self._rules()
        checks = [self._check(table.controls[r["control"]], r["key"], report)
                  for r in rows
                  if r["control"] in table.controls and table.controls[r["control"]].is_readable]
        await asyncio.gather(*checks)
        report.seconds = time.monotonic() - started
        self._metrics.reconcile_seconds.set(report.seconds)
        self._metrics.reconcile_keys.set(report.checked)
        return report

    async def _check(self, control: Control, key: str, report: PassReport) -> None:
        async with self._slots, self._executor.key_lock(control.name, key):
            if await self._below(control, key, report) is None:
                return
            try:
                # Across replicas too: a step in flight on the key elsewhere may be raising
                # it right now, and repairing to the held level after that would lower it.
                # With the key held, both sides are read again before the repair.
                async with hold_key(self._pool, control.name, key, wait_s=0):
                    below = await self._below(control, key, report, again=True)
                    if below is not None:
                        held, observed = below
                        await self._repair(control, key, held["level"], observed,
                                           held["incident_id"], report)
            except KeyBusy as e:
                report.busy += 1
                log.info("reconcile: key being changed; checked again next pass",
                         control=control.name, key=key, why=str(e))

    async def _below(self, control: Control, key: str, report: PassReport, *,
                     again: bool = False) -> tuple[asyncpg.Record, str | None] | None:
        """The held level and what the target reports, if the target is below it; ``again``
        for the second look, which does not count as another key checked."""
        async with self._pool.acquire() as conn:
            held = await conn.fetchrow("SELECT level, rank, incident_id FROM control_levels"
                                       " WHERE control = $1 AND key = $2", control.name, key)
        if held is None or held["rank"] == 0:
            return None  # released meanwhile
        if not again:
            report.checked += 1
        try:
            observed, _ = await self._client.read(control, key, control.target.timeout_s)
        except ActionError as e:
            report.unreadable += 1
            log.warning("reconcile: target unreadable", control=control.name, key=key,
                        error=str(e))
            return None
        if observed is not None and control.rank(observed) >= held["rank"]:
            return None
        return held, observed

    async def _repair(self, control: Control, key: str, level: str, observed: str | None,
                      incident_id: int | None, report: PassReport) -> None:
        idempotency_key = f"responder-drift-{uuid.uuid4()}"
        detail: dict[str, object] = {"held": level, "observed": observed,
                                     "idempotency_key": idempotency_key}
        # No call without its record first: the intent of the repair.
        await self._append(Entry("drift_detected", incident_id=incident_id,
                                 control=control.name, key=key, detail=dict(detail)))
        try:
            call = await self._client.apply(control, key, level, idempotency_key,
                                            self._deadline_s, audit.for_drift(incident_id))
            verified, _, _ = await self._client.verify(control, key, level, self._deadline_s)
            detail.update(call=call.to_json(), verified=verified)
            kind = "drift_corrected" if verified else "drift_repair_failed"
        except (CallFailed, ActionError) as e:
            detail["error"] = str(e)
            kind = "drift_repair_failed"
        if kind == "drift_corrected":
            report.corrected += 1
            report.corrections.append((control.name, key))
            self._metrics.drift.labels(control.name, "corrected").inc()
            log.error("drift corrected: the target had lost a held level; page a person",
                      control=control.name, key=key, held=level, observed=observed)
        else:
            report.failed += 1
            self._metrics.drift.labels(control.name, "failed").inc()
            log.error("drift NOT corrected: the target is below the held level; page a person",
                      control=control.name, key=key, held=level, observed=observed)

        await asyncio.shield(self._append(Entry(kind, incident_id=incident_id,
                                                control=control.name, key=key, detail=detail)))

    async def _append(self, entry: Entry) -> None:
        async def unit(conn: Conn, chain: ChainAppender) -> None:
            chain.add(entry)

        await self._writer.submit(unit)
