"""Drift repair: read every contained key back from its target and re-apply what was lost.

A target that restarted and forgot, or a person who bypassed responder, leaves the target
below the level responder holds. Each pass reads every held key whose control declares a
read; where the target reports less, the held level is applied again (new Idempotency-Key),
recorded as ``drift_corrected`` and logged at error level so someone is paged.

A target that cannot be read (it restarted and forgot, and answers 404) is never assumed
to still hold the level: that is drift too, and the level is applied again; if the
read-back still fails, the repair is recorded as failed and a person is paged.

Drift repair is an automatic call and obeys the mode like any step: in dry-run a pass
records ``drift_would_repair`` (once per key and finding) and calls nothing; paused or
during break-glass (a person has the controls) it keeps its hands off entirely.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from responder.actions.admin_http import AdminClient
from responder.engine import audit, levels
from responder.engine.executor import Executor
from responder.engine.levels import Outcome
from responder.engine.policy import Policy
from responder.errors import ActionError, StoreError
from responder.metrics import Metrics
from responder.rules.table import Control, RuleTable
from responder.store.actionlog import ChainAppender, Entry
from responder.store.claims import KeyBusy
from responder.store.kinds import Kind
from responder.store.levels import HeldKey, HeldLevel, held_keys, held_level
from responder.store.types import Conn, Pool
from responder.store.writer import Unit, Writer

log = structlog.get_logger("responder.reconciler")


@dataclass
class PassReport:
    """What one pass found."""

    checked: int = 0
    corrected: int = 0
    failed: int = 0
    unreadable: int = 0
    busy: int = 0
    """Keys below their held level left for the next pass: being changed elsewhere."""
    would_repair: int = 0
    """Keys found below their held level in dry-run: recorded, not repaired."""
    held_off: bool = False
    """Paused or break-glass: nothing was read or repaired."""
    seconds: float = 0.0
    corrections: list[tuple[str, str]] = field(default_factory=list)


class Reconciler:
    """Reads held levels back from targets on an interval and repairs drift."""

    def __init__(self, pool: Pool, writer: Writer, rules: Callable[[], RuleTable],
                 client: AdminClient, executor: Executor, metrics: Metrics, *,
                 deadline_s: float, concurrency: int = 16,
                 policy: Callable[[], Policy] = Policy) -> None:
        self._pool = pool
        self._writer = writer
        self._rules = rules
        self._client = client
        self._executor = executor
        self._metrics = metrics
        self._deadline_s = deadline_s
        self._slots = asyncio.Semaphore(concurrency)
        self._policy = policy
        # What dry-run last recorded per key, so a pass does not repeat an unchanged finding.
        self._noted: dict[tuple[str, str], tuple[str, str | None]] = {}

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                report = await self.pass_once()
            except StoreError as e:
                log.warning("reconcile pass skipped: store unavailable", error=str(e))
                continue
            if report.corrected or report.failed:
                log.info("reconcile pass", checked=report.checked, corrected=report.corrected,
                         failed=report.failed, seconds=round(report.seconds, 3))

    async def pass_once(self) -> PassReport:
        """Check every held key once; correct any the target reports lower."""
        started = time.monotonic()
        report = PassReport()
        if self._policy().automatic == "paused":
            report.held_off = True
            return report
        rows = await held_keys(self._pool)
        table = self._rules()
        checks = [self._check(table.controls[r.control], r, report)
                  for r in rows
                  if r.control in table.controls and table.controls[r.control].is_readable]
        await asyncio.gather(*checks)
        report.seconds = time.monotonic() - started
        self._metrics.reconcile_seconds.set(report.seconds)
        self._metrics.reconcile_keys.set(report.checked)
        return report

    async def _check(self, control: Control, row: HeldKey, report: PassReport) -> None:
        key = row.key
        async with self._slots:
            # A first look needs only this process's lock, and the level the pass read with
            # every other key's (one statement a pass, not one a key): a key released or
            # raised since costs at most a read, as the repair looks again. A repair takes
            # the key as every change does (engine/levels.py: across replicas first, then
            # here).
            async with self._executor.key_lock(control.name, key):
                first = HeldLevel(row.level, row.rank, row.incident_id, None)
                if await self._below(control, key, report, known=first) is None:
                    return
            try:
                # Across replicas too: a step in flight on the key elsewhere may be raising
                # it right now, and repairing to the held level after that would lower it.
                # With the key held, both sides are read again before the repair.
                async with levels.take_key(self._pool, self._executor.locks, control.name,
                                           key, wait_s=0):
                    below = await self._below(control, key, report, again=True)
                    if below is not None:
                        held, observed = below
                        await self._obeying_mode(control, key, held.level, observed,
                                                 held.incident_id, report)
            except KeyBusy as e:
                report.busy += 1
                log.info("reconcile: key being changed; checked again next pass",
                         control=control.name, key=key, why=str(e))

    async def _below(self, control: Control, key: str, report: PassReport, *,
                     again: bool = False, known: HeldLevel | None = None,
                     ) -> tuple[HeldLevel, str | None] | None:
        """The held level (``known``, or read now) and what the target reports, if the
        target is below it; ``again`` for the second look, which does not count as another
        key checked."""
        held = known if known is not None else await held_level(self._pool, control.name, key)
        if held is None or held.rank == 0:
            return None  # released meanwhile
        if not again:
            report.checked += 1
        try:
            observed, _ = await self._client.read(control, key, control.target.timeout_s)
        except ActionError as e:
            # Never assume an unreadable target still holds the level: repair it.
            if not again:
                report.unreadable += 1
                log.warning("reconcile: target unreadable; applying the held level again",
                            control=control.name, key=key, error=str(e))
            return held, None
        if observed is not None and control.rank(observed) >= held.rank:
            self._noted.pop((control.name, key), None)
            return None
        return held, observed

    async def _obeying_mode(self, control: Control, key: str, level: str,
                            observed: str | None, incident_id: int | None,
                            report: PassReport) -> None:
        """Repair in enforce; in dry-run record what would be repaired; else do nothing.
        Asked again here, right before the call: the mode may have changed in the pass."""
        mode = self._policy().automatic
        if mode == "enforce":
            self._noted.pop((control.name, key), None)
            await self._repair(control, key, level, observed, incident_id, report)
            return
        if mode == "paused":
            return
        report.would_repair += 1
        if self._noted.get((control.name, key)) == (level, observed):
            return
        self._noted[(control.name, key)] = (level, observed)
        self._metrics.drift.labels(control.name, "would_repair").inc()
        log.error("dry-run: drift found and NOT repaired; page a person", control=control.name,
                  key=key, held=level, observed=observed)
        await self._append(Entry(Kind.DRIFT_WOULD_REPAIR, incident_id=incident_id,
                                 control=control.name, key=key,
                                 detail={"held": level, "observed": observed,
                                         "effect": "dry_run",
                                         "request": {"method": control.method,
                                                     "target": control.target.name,
                                                     "path": control.render(key, level)[0]}}))

    async def _repair(self, control: Control, key: str, level: str, observed: str | None,
                      incident_id: int | None, report: PassReport) -> None:
        idempotency_key = f"responder-drift-{uuid.uuid4()}"
        detail: dict[str, object] = {"held": level, "observed": observed,
                                     "idempotency_key": idempotency_key}
        # No call without its record first: the intent of the repair.
        intent = _append(Entry(Kind.DRIFT_DETECTED, incident_id=incident_id,
                               control=control.name, key=key, detail=dict(detail)))
        change = levels.Change(control, key, level, idempotency_key, self._deadline_s,
                               audit.for_drift(incident_id), self._deadline_s)

        def record(outcome: Outcome) -> Unit[None]:
            if outcome.error is not None:
                detail["error"] = str(outcome.error)
            else:
                assert outcome.call is not None
                detail.update(call=outcome.call.to_json(), verified=outcome.verified)
            if outcome.error is None and outcome.verified:
                kind = Kind.DRIFT_CORRECTED
                report.corrected += 1
                report.corrections.append((control.name, key))
                self._metrics.drift.labels(control.name, "corrected").inc()
                log.error("drift corrected: the target had lost a held level; page a person",
                          control=control.name, key=key, held=level, observed=observed)
            else:
                kind = Kind.DRIFT_REPAIR_FAILED
                report.failed += 1
                self._metrics.drift.labels(control.name, "failed").inc()
                log.error("drift NOT corrected: the target is below the held level; page a"
                          " person", control=control.name, key=key, held=level,
                          observed=observed)
            return _append(Entry(kind, incident_id=incident_id, control=control.name, key=key,
                                 detail=detail))

        await levels.apply(self._client, self._writer, change, record, intent=intent)

    async def _append(self, entry: Entry) -> None:
        await self._writer.submit(_append(entry))


def _append(entry: Entry) -> Unit[None]:
    async def unit(conn: Conn, chain: ChainAppender) -> None:
        chain.add(entry)

    return unit
