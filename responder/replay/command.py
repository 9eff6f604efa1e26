"""``responder replay``: load the tables, read the inputs, print the differences.

Exit code 0: no differences; 1: differences; 2: an error (bad rules, input, store).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from responder.config import Settings
from responder.engine.policy import parse_time
from responder.errors import ReplayInputError, ResponderError, RuleError
from responder.replay.diff import Report, replay
from responder.replay.file_input import read_file
from responder.replay.shadow import Shadow
from responder.rules.loader import load_rules
from responder.rules.table import RuleTable

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """An RFC 3339 time, or a duration back from now such as ``30m``, ``24h``, ``7d``."""
    if text is None:
        return None
    match = _RELATIVE.match(text.strip())
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (now or datetime.now(UTC)) - delta
    parsed = parse_time(text)
    if parsed is None:
        raise ReplayInputError(f"--since: expected an RFC 3339 time or a duration like 24h,"
                               f" not {text!r}")
    return parsed


def load_table(rules_dir: Path, packs: list[str]) -> RuleTable:
    # Nothing is called, so target tokens need not be present.
    return load_rules(rules_dir, resolve_secrets=False, packs=packs)


def from_file(candidate: RuleTable, baseline: RuleTable, path: Path,
              since: datetime | None) -> Report:
    events = read_file(path, since)
    return replay(events, Shadow(candidate), Shadow(baseline))


async def from_store(candidate: RuleTable, conn: Any, since: datetime | None) -> Report:
    from responder.replay.store_input import read_store

    history = await read_store(conn, since)
    return replay(history.events, Shadow(candidate, history.open_at_start), history.baseline)


def render(report: Report, header: str, as_json: bool) -> str:
    if as_json:
        return json.dumps(report.to_json(), sort_keys=True)
    return "\n".join([header, *report.lines()])


async def run(settings: Settings, args: argparse.Namespace,
              connect: Callable[[Settings], Awaitable[Any]],
              names: Callable[[str | None], list[str]]) -> int:
    """The command: print the report; exit 0 (no differences), 1 (some) or 2 (an error)."""
    try:
        report, header = await _report(settings, args, connect, names)
    except RuleError as e:
        print("responder: invalid rules:", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except ResponderError as e:
        print(f"responder: {e}", file=sys.stderr)
        return 2
    print(render(report, header, args.json))
    return 1 if report.changed else 0


async def _report(settings: Settings, args: argparse.Namespace,
                  connect: Callable[[Settings], Awaitable[Any]],
                  names: Callable[[str | None], list[str]]) -> tuple[Report, str]:
    packs = settings.rule_packs if args.packs is None else names(args.packs)
    since = parse_since(args.since)
    candidate = load_table(args.rules, packs)
    if args.from_file is not None:
        base_dir = args.baseline or settings.rules_dir
        report = from_file(candidate, load_table(base_dir, packs), args.from_file, since)
        return report, f"replay of {args.from_file}: baseline {base_dir}, candidate {args.rules}"
    if args.baseline is not None:
        raise ResponderError("--baseline compares with a table over --from FILE; from the"
                             " store the baseline is what was done")
    conn = await connect(settings)
    try:
        report = await from_store(candidate, conn, since)
    finally:
        await conn.close()
    window = f" since {since.isoformat()}" if since else ""
    return report, f"replay of the store{window}: baseline what was done, candidate {args.rules}"
