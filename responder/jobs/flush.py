"""How the jobs that hold queued work stop: let them finish it, bounded."""

from __future__ import annotations

import asyncio

import structlog

from responder.evidence.builder import EvidenceBuilder
from responder.jobs import Stop, stop_task
from responder.store.writer import Writer

log = structlog.get_logger("responder")

FLUSH_GRACE_S = 5.0


def stop_writer(writer: Writer) -> Stop:
    async def stop(task: asyncio.Task[None]) -> None:
        writer.stop()
        try:
            await asyncio.wait_for(task, timeout=FLUSH_GRACE_S)
        except TimeoutError:
            # The store is not answering. Nothing acknowledged is lost: unwritten outcomes
            # leave their steps pending, and the next start runs them again (idempotently).
            log.error("queued writes not flushed before exit; pending steps resume at next"
                      " start", backlog=writer.backlog)

    return stop


def stop_evidence(evidence: EvidenceBuilder) -> Stop:
    """Stop the sealer, then seal what is still waiting (bounded)."""
    async def stop(task: asyncio.Task[None]) -> None:
        await stop_task(task)
        try:
            await asyncio.wait_for(evidence.flush(), timeout=FLUSH_GRACE_S)
        except TimeoutError:
            log.warning("evidence not sealed before exit; it is built again at next change")

    return stop
