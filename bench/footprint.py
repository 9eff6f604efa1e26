"""What each alert costs the database: commits, rows and bytes, counted from PostgreSQL itself.

A snapshot holds the bench database's ``pg_stat_database`` counters, and the exact row count
and ``pg_total_relation_size`` of every table in it. Two snapshots, one after the warm-up and
one after the measured alerts, give the cost of the measured alerts.

PostgreSQL 15 backends flush their statistics at most once a second while busy and then up
to ten seconds after going idle, or when they exit. So the first snapshot is taken after
``SETTLE_S`` of quiet, and the commit counters of the second are read after the server has
stopped (its sessions ended, their counters flushed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg

SETTLE_S = 11.0
"""Longer than PostgreSQL's ten-second idle flush interval (PGSTAT_IDLE_INTERVAL)."""
STABLE_S = 0.25
"""A closed session's backend flushes its counters as it exits, a moment after the close."""
STABLE_TRIES = 8
OWN_COMMITS = 2
"""The two snapshots' own read transactions, which land in the counters too."""
STAT_COLUMNS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")
STATS = ("SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted"
         " FROM pg_stat_database WHERE datname = $1")
TABLES = """
SELECT format('%I.%I', n.nspname, c.relname) AS name,
       pg_total_relation_size(c.oid) AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1
"""


@dataclass
class Snapshot:
    stats: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)


async def database_stats(admin_dsn: str, database: str) -> dict[str, int]:
    """The database's counters, read from another database so the read is not counted."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        row = await conn.fetchrow(STATS, database)
    finally:
        await conn.close()
    return {c: int(row[c]) for c in STAT_COLUMNS} if row else {}


async def settled_stats(admin_dsn: str, database: str) -> dict[str, int]:
    """The counters once two reads ``STABLE_S`` apart agree (or after ``STABLE_TRIES``)."""
    last = await database_stats(admin_dsn, database)
    for _ in range(STABLE_TRIES):
        await asyncio.sleep(STABLE_S)
        now = await database_stats(admin_dsn, database)
        if now == last:
            break
        last = now
    return last


async def tables(dsn: str) -> tuple[dict[str, int], dict[str, int]]:
    """Exact row count and total size (heap, indexes, TOAST) of every table."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(readonly=True):
            found = await conn.fetch(TABLES)
            rows = {}
            for r in found:
                rows[r["name"]] = int(await conn.fetchval(
                    f"SELECT count(*) FROM {r['name']}"))  # noqa: S608 - names from pg_class
    finally:
        await conn.close()
    return rows, {r["name"]: int(r["bytes"]) for r in found}


@dataclass(frozen=True)
class Footprint:
    """Per measured alert: commits and row changes, and rows and bytes left in each table."""

    alerts: int
    stats: dict[str, float]
    rows: dict[str, float]
    bytes: dict[str, float]
    commits_per_s: float


def footprint(before: Snapshot, after: Snapshot, alerts: int, span_s: float) -> Footprint:
    def per(a: dict[str, int], b: dict[str, int]) -> dict[str, float]:
        return {k: (b.get(k, 0) - a.get(k, 0)) / alerts for k in sorted(set(a) | set(b))}

    stats = per(before.stats, after.stats)
    if "xact_commit" in stats:
        stats["xact_commit"] -= OWN_COMMITS / alerts
    commits = stats.get("xact_commit", 0.0) * alerts
    return Footprint(alerts, stats, per(before.rows, after.rows),
                     per(before.bytes, after.bytes), commits / span_s if span_s else 0.0)


def render(system: str, concurrency: int, fp: Footprint) -> list[str]:
    """A few lines of markdown for one level."""
    s = fp.stats
    lines = [f"### {system} at concurrency {concurrency} ({fp.alerts} alerts)", "",
             f"- per alert: {s.get('xact_commit', 0):.2f} commits,"
             f" {s.get('xact_rollback', 0):.2f} rollbacks, rows inserted"
             f" {s.get('tup_inserted', 0):.1f} / updated {s.get('tup_updated', 0):.1f}"
             f" / deleted {s.get('tup_deleted', 0):.1f};"
             f" rows kept {sum(fp.rows.values()):.1f},"
             f" bytes kept {sum(fp.bytes.values()):,.0f}",
             f"- commits/s over the level (first send to last call + quiet):"
             f" {fp.commits_per_s:,.0f}", "",
             "| table | rows/alert | bytes/alert |", "|---|--:|--:|"]
    for name in sorted(fp.bytes, key=lambda k: -fp.bytes[k]):
        if fp.rows.get(name) or fp.bytes[name]:
            lines.append(f"| {name} | {fp.rows.get(name, 0):.2f} | {fp.bytes[name]:,.0f} |")
    return [*lines, ""]
