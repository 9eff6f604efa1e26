"""Reads for the health endpoints and the metrics scrape."""

from __future__ import annotations

from responder.store.db import acquire
from responder.store.types import Pool

CONTAINED_SQL = "SELECT control, count(*) AS n FROM control_levels WHERE rank > 0 GROUP BY control"


async def contained(pool: Pool, timeout_s: float) -> dict[str, int]:
    """Keys held above their lowest level, per control (controls with none left out)."""
    async with acquire(pool, timeout_s) as conn:
        rows = await conn.fetch(CONTAINED_SQL, timeout=timeout_s)
    return {r["control"]: r["n"] for r in rows}
