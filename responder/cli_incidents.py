"""``responder incidents``: the incident list, read from the store like ``actions``."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from responder.cli_output import add_output, print_rows
from responder.config import Settings

COLUMNS = (("ID", "id", 5), ("OPENED (UTC)", "opened", 19), ("SEV", "severity", 8),
           ("STATUS", "status", 8), ("HELD NOW", "held_now", 8), ("RULE", "rule_id", 26),
           ("SET", "held", 0))


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser("incidents", help="list incidents, newest first, with what each"
                         " holds")
    cmd.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    cmd.add_argument("--before", type=int, help="only incidents older than this id (paging)")
    add_output(cmd)


def _held(controls: list[dict[str, Any]]) -> str:
    """What the incident's steps set (a later release may have lowered some since)."""
    return ", ".join(f"{c['control']}" + (f"[{c['key']}]" if c.get("key") else "")
                     + f"={c['level']}" for c in controls) or "-"


async def run(settings: Settings, args: argparse.Namespace,
              connect: Callable[[Settings], Awaitable[Any]]) -> int:
    from responder.store import queries

    conn = await connect(settings)
    try:
        rows = await queries.list_incidents(conn, args.before, max(1, args.limit))
    finally:
        await conn.close()
    if args.output == "json":
        print_rows(rows, COLUMNS, "json")
        return 0
    shown = [{**r, "opened": r["opened_at"].isoformat()[:19].replace("T", " "),
              "held": _held(r["controls"])} for r in rows]
    print_rows(shown, COLUMNS, "table")
    return 0
