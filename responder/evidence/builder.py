"""Seal evidence shortly after an incident changes, coalescing bursts of changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from responder.config import SinkSpec
from responder.errors import StoreUnavailable
from responder.evidence.bundle import Seal, build_many
from responder.evidence.snapshots import Reads, Snapshot
from responder.rules.table import Rule, RuleTable
from responder.store import evidence
from responder.store.db import acquire
from responder.store.snapshots import snapshot_states
from responder.store.types import Pool
from responder.store.writer import Writer

log = structlog.get_logger("responder.evidence")

Snapshotter = Callable[[int, Rule, Reads], Awaitable[list[Snapshot]]]
"""Takes one incident's snapshots for its rule, sharing the pass's reads."""

MAX_BATCH = 500
"""Incidents built and sealed together: a few statements per batch, not per incident."""

SEALS_PER_COMMIT = 16
"""Seals handed to the writer at a time. The writer shares one transaction at a time with
intake; a large group of seals in it would hold new alerts' 2xx for tens of ms."""

SNAPSHOT_CONCURRENCY = 16
"""Snapshot fetches at once, so a burst of new incidents is not a burst on the targets."""

class EvidenceBuilder:
    """touch(incident) asks for a new version; one is sealed after a short quiet time."""

    def __init__(self, pool: Pool, writer: Writer, rules: Callable[[], RuleTable], *,
                 sinks: Sequence[SinkSpec] = (), link: str = "", debounce_s: float = 0.2,
                 sealed: Callable[[], None] | None = None,
                 snapshotter: Snapshotter | None = None) -> None:
        self._pool = pool
        self._writer = writer
        self._rules = rules
        self._snapshotter = snapshotter
        self._snapped: set[int] = set()
        self._sinks = sinks
        self._link = link
        self._sealed = sealed
        self._debounce_s = debounce_s
        self._dirty: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def touch(self, incident_ids: set[int] | list[int]) -> None:
        self._dirty.update(incident_ids)
        if self._dirty:
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._debounce_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Seal every touched incident now, MAX_BATCH at a time."""
        todo = sorted(self._dirty)
        self._dirty.clear()
        try:
            while todo:
                await self._seal_batch(todo[:MAX_BATCH])
                del todo[:MAX_BATCH]
        finally:
            # Cancelled part way (shutdown): what was not sealed yet is still owed a seal.
            self._dirty.update(todo)

    def _retry_later(self, incident_ids: Sequence[int], error: BaseException) -> None:
        # Evidence must never stop containment; the next pass tries again.
        log.warning("evidence not sealed yet; will retry", incidents=list(incident_ids),
                    error=f"{type(error).__name__}: {error}")
        self._dirty.update(incident_ids)
        self._wake.set()

    async def _seal_batch(self, incident_ids: list[int]) -> None:
        table = self._rules()
        try:
            snaps, failed = await self._snapshots(incident_ids, table)
            async with acquire(self._pool) as conn:
                await evidence.add_snapshots(conn, [(i, s.name, s.kind, s.ok, s.result)
                                                    for i, s in snaps])
                # Read outside the writer: a change committed meanwhile touches the incident
                # again, and the next pass seals it.
                built_at = await evidence.clock(conn)
                contents = await build_many(conn, incident_ids, table)
        except StoreUnavailable as e:
            self._retry_later(incident_ids, e)
            return
        except Exception as e:
            if len(incident_ids) == 1:
                self._retry_later(incident_ids, e)
                return
            for incident_id in incident_ids:  # find the one that cannot be built
                await self._seal_batch([incident_id])
            return
        self._snapped.update(i for i in incident_ids if i not in failed)
        for incident_id, error in failed.items():
            self._retry_later([incident_id], error)
        # One unit per incident: the writer merges them into one statement per kind, and
        # if that fails it retries them one by one, so one bad seal fails alone.
        seals = [Seal(i, contents[i], self._sinks, self._link, self._sealed, built_at)
                 for i in incident_ids if i in contents and i not in failed]
        for start in range(0, len(seals), SEALS_PER_COMMIT):
            chunk = seals[start:start + SEALS_PER_COMMIT]
            results = await asyncio.gather(*(self._writer.submit(s) for s in chunk),
                                           return_exceptions=True)
            for s, result in zip(chunk, results, strict=True):
                if isinstance(result, BaseException):
                    self._retry_later([s.incident_id], result)

    async def _snapshots(self, incident_ids: list[int], table: RuleTable,
                         ) -> tuple[list[tuple[int, Snapshot]], dict[int, Exception]]:
        """Snapshots the incidents' rules declare, taken once, before an incident's first
        seal, concurrently; and the incidents whose snapshots could not be taken."""
        todo = [i for i in incident_ids if i not in self._snapped]
        snapshotter = self._snapshotter
        if snapshotter is None or not todo:
            return [], {}
        async with acquire(self._pool) as conn:
            states = await snapshot_states(conn, todo)
        # Only rules that declare something, and only once per incident.
        wanted = [(i, rule) for i, state in states.items()
                  if state.taken == 0 and (rule := table.rule(state.rule_id))
                  and (rule.queries or rule.snapshots)]
        limit = asyncio.Semaphore(SNAPSHOT_CONCURRENCY)
        reads = Reads()

        async def take(incident_id: int, rule: Rule) -> list[Snapshot]:
            async with limit:
                return await snapshotter(incident_id, rule, reads)

        taken = await asyncio.gather(*(take(i, rule) for i, rule in wanted),
                                     return_exceptions=True)
        snaps: list[tuple[int, Snapshot]] = []
        failed: dict[int, Exception] = {}
        for (incident_id, _), result in zip(wanted, taken, strict=True):
            if isinstance(result, Exception):
                failed[incident_id] = result
            elif isinstance(result, BaseException):
                raise result
            else:
                snaps += [(incident_id, s) for s in result]
        return snaps, failed
