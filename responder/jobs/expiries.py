"""Break-glass pauses and release requests stop applying at their expiry by themselves;
these steps only write the expiry down. They run on every replica: each write is
conditional on the row, so it happens once."""

from __future__ import annotations

import structlog

from responder.engine.manual import expire_requests
from responder.engine.modes import Modes
from responder.store.writer import Writer

log = structlog.get_logger("responder.jobs")


async def end_expired_break_glass(modes: Modes, writer: Writer) -> None:
    if modes.expired():
        await writer.submit(modes.end_break_glass("expired"))
        log.warning("break-glass expired: automation acts again")


async def expire_release_requests(writer: Writer) -> None:
    expired = await writer.submit(expire_requests)
    if expired:
        log.warning("release requests expired unapproved", count=expired)
