"""Seal evidence shortly after an incident changes, coalescing bursts of changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import structlog

from responder.config import SinkSpec
from responder.evidence.bundle import build, seal
from responder.evidence.snapshots import Snapshot
from responder.rules.table import RuleTable
from responder.store.actionlog import ChainAppender
from responder.store.db import Conn
from responder.store.writer import Writer

log = structlog.get_logger("responder.evidence")

Snapshotter = Callable[[int, RuleTable], Awaitable[list[Snapshot]]]


class EvidenceBuilder:
    """touch(incident) asks for a new version; one is sealed after a short quiet time."""

    def __init__(self, pool: asyncpg.Pool, writer: Writer, rules: Callable[[], RuleTable], *,
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
        """Seal every touched incident now."""
        dirty, self._dirty = self._dirty, set()
        for incident_id in sorted(dirty):
            try:
                await self._seal(incident_id)
            except Exception as e:  # evidence must never stop containment; retry later
                log.warning("evidence not sealed yet; will retry", incident=incident_id,
                            error=str(e))
                self._dirty.add(incident_id)
                self._wake.set()

    async def _snapshots(self, incident_id: int) -> list[Snapshot]:
        """Snapshots the incident's rule declares, taken once, before its first seal."""
        if self._snapshotter is None or incident_id in self._snapped:
            return []
        snaps = await self._snapshotter(incident_id, self._rules())
        self._snapped.add(incident_id)
        return snaps

    async def _seal(self, incident_id: int) -> None:
        snaps = await self._snapshots(incident_id)
        async with self._pool.acquire() as conn:
            for s in snaps:
                await conn.execute("INSERT INTO evidence_snapshots (incident_id, name, kind, ok,"
                                   " result) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                                   incident_id, s.name, s.kind, s.ok, s.result)
            # Read outside the writer: a change committed meanwhile touches the incident
            # again, and the next pass seals it.
            content = await build(conn, incident_id, self._rules())
        if content is not None:
            await self._writer.submit(self._unit(incident_id, content))

    def _unit(self, incident_id: int, content: dict[str, Any]) -> Any:
        async def unit(conn: Conn, chain: ChainAppender) -> Any:
            result = await seal(conn, chain, incident_id, content, self._sinks, self._link)
            if result is not None and self._sealed is not None:
                chain.after_commit(self._sealed)
            return result

        return unit
