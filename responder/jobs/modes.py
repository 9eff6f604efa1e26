"""Keep this replica's view of the shared automation state current."""

from __future__ import annotations

from responder.engine.modes import Modes
from responder.store import queries
from responder.store.db import acquire
from responder.store.types import Pool


async def sync_modes(modes: Modes, pool: Pool) -> None:
    """Reload the mode, which another replica may have switched, and give the blast-radius
    guard what every replica contained in its window."""
    async with acquire(pool) as conn:
        await modes.load(conn)
        if modes.guard is not None:
            modes.guard.absorb(await queries.recent_containments(conn, modes.guard.window_s))
