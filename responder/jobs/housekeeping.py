"""Forget what no longer matters: old event ids and revoked web sessions."""

from __future__ import annotations

import functools

from responder.store import sessions
from responder.store.db import acquire
from responder.store.nonces import prune_nonces
from responder.store.types import Pool
from responder.store.writer import Writer


async def forget_old_nonces(writer: Writer, window_s: float) -> None:
    await writer.submit(functools.partial(prune_nonces, window_s=window_s))


async def forget_revoked_sessions(pool: Pool) -> None:
    async with acquire(pool) as conn:
        await sessions.prune(conn)
