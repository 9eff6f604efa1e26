"""`responder outbox retry`: send dead deliveries again.

A dead row goes back to pending with its attempts reset and a fresh retry window
(``retry_since``); the daemon's outbox worker, on any replica, takes it on its next poll.
The row keeps its idempotency key, so a sink that did take it before takes it once.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from responder.config import Settings
from responder.store import outbox


def add_parser(sub: Any) -> None:
    """The `outbox` command and its `retry` verb."""
    outbox = sub.add_parser("outbox", help="the delivery outbox (evidence and pages)")
    verbs = outbox.add_subparsers(dest="outbox_command", required=True)
    retry = verbs.add_parser("retry", help="send dead deliveries again (all of them, or those"
                             " the options select)")
    retry.add_argument("--sink", help="only this sink's deliveries")
    retry.add_argument("--incident", type=int, help="only this incident's deliveries")
    retry.add_argument("--id", type=int, action="append", default=[], dest="ids",
                       help="only this outbox row (repeatable)")


async def run(settings: Settings, args: argparse.Namespace,
              connect: Callable[[Settings], Awaitable[Any]]) -> int:
    conn = await connect(settings)
    try:
        rows = await outbox.redrive(conn, args.sink, args.incident, args.ids)
    finally:
        await conn.close()
    for r in rows:
        print(f"{r['id']:>6}  {r['sink']:16} {r['kind']:7} {r['idempotency_key']}"
              f"  (was: {r['last_error'] or '-'})")
    print(f"{len(rows)} dead deliveries sent again")
    return 0
