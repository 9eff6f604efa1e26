"""``responder replay``: load the tables, read the inputs, print the differences.

Exit code 0: no differences; 1: differences, or a changed metric rule the input cannot
evaluate (a note says which); 2: an error (bad rules, input, store).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from responder.config import Settings
from responder.durations import EXAMPLES, parse_duration_s
from responder.engine.policy import parse_time
from responder.errors import ReplayInputError, ResponderError, RuleError, explain
from responder.replay.diff import Report, replay
from responder.replay.events import SampleEvent
from responder.replay.file_input import read_file
from responder.replay.metric_changes import changed, file_notes, store_notes, unreplayable
from responder.replay.shadow import MAX_SERIES, STALE_AFTER_S, Shadow
from responder.rules.loader import load_rules
from responder.rules.table import RuleTable


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """An RFC 3339 time, or a duration back from now such as ``30m``, ``24h``, ``7d``."""
    if text is None:
        return None
    try:
        back_s = parse_duration_s(text)  # the rules' duration syntax, days included
    except ValueError:
        parsed = parse_time(text)
        if parsed is None:
            raise ReplayInputError(f"--since: expected an RFC 3339 time or a duration such"
                                   f" as {EXAMPLES}, not {text!r}") from None
        return parsed
    return (now or datetime.now(UTC)) - timedelta(seconds=back_s)


def load_table(rules_dir: Path, packs: list[str]) -> RuleTable:
    # Nothing is called, so target tokens need not be present.
    return load_rules(rules_dir, resolve_secrets=False, packs=packs)


def from_file(candidate: RuleTable, baseline: RuleTable, path: Path,
              since: datetime | None, settings: Settings | None = None) -> Report:
    """Both tables over the file's alerts and samples; each evaluates the samples itself,
    with the daemon's series limit and staleness."""
    max_series = settings.metric_rules.max_series if settings else MAX_SERIES
    stale_after_s = settings.metric_rules.stale_after_s if settings else STALE_AFTER_S
    events = read_file(path, since)
    report = replay(events,
                    Shadow(candidate, max_series=max_series, stale_after_s=stale_after_s),
                    Shadow(baseline, max_series=max_series, stale_after_s=stale_after_s))
    sampled = {e.sample[0] for e in events if isinstance(e, SampleEvent)}
    report.notes += file_notes(sampled, changed(baseline, candidate), candidate)
    return report


async def from_store(candidate: RuleTable, conn: Any, since: datetime | None,
                     in_force: RuleTable | None = None) -> Report:
    """The candidate over the recorded alerts, compared with what was done. ``in_force``
    (the configured table) tells which metric rules the candidate changes: the store keeps
    no samples, so those are noted rather than re-evaluated."""
    from responder.replay.store_input import read_store

    history = await read_store(conn, since)
    metric = unreplayable(history.events, candidate)
    report = replay(history.events, Shadow(candidate, history.open_at_start), history.baseline,
                    metric.skipped)
    changes = changed(in_force, candidate) if in_force is not None else None
    report.notes += store_notes(metric, changes, candidate)
    return report


def render(report: Report, header: str, as_json: bool) -> str:
    if as_json:
        return json.dumps(report.to_json(), sort_keys=True)
    return "\n".join([header, *report.lines()])


async def run(settings: Settings, args: argparse.Namespace,
              connect: Callable[[Settings], Awaitable[Any]],
              names: Callable[[str | None], list[str]]) -> int:
    """The command: print the report; exit 0 (no differences), 1 (some, or a change it
    cannot evaluate) or 2 (an error)."""
    try:
        report, header = await _report(settings, args, connect, names)
    except ResponderError as e:
        print(explain(e), file=sys.stderr)
        return 2
    print(render(report, header, args.json))
    # A change replay cannot evaluate is not shown to be safe: it does not pass as "none".
    return 1 if report.changed or report.notes else 0


async def _report(settings: Settings, args: argparse.Namespace,
                  connect: Callable[[Settings], Awaitable[Any]],
                  names: Callable[[str | None], list[str]]) -> tuple[Report, str]:
    packs = settings.rules.packs if args.packs is None else names(args.packs)
    since = parse_since(args.since)
    candidate = load_table(args.rules, packs)
    if args.from_file is not None:
        base_dir = args.baseline or settings.rules.dir
        report = from_file(candidate, load_table(base_dir, packs), args.from_file, since,
                           settings)
        return report, f"replay of {args.from_file}: baseline {base_dir}, candidate {args.rules}"
    if args.baseline is not None:
        raise ResponderError("--baseline compares with a table over --from FILE; from the"
                             " store the baseline is what was done")
    try:
        in_force: RuleTable | None = load_table(settings.rules.dir, packs)
    except RuleError:
        in_force = None
    conn = await connect(settings)
    try:
        report = await from_store(candidate, conn, since, in_force)
    finally:
        await conn.close()
    if in_force is None and candidate.metric_rules:
        report.notes.append(
            f"the configured rules ({settings.rules.dir}) do not load, so a changed metric"
            " rule is found only through its recorded alerts; set RESPONDER_RULES_DIR to the"
            " rules in force, or replay the samples with --from FILE.")
    window = f" since {since.isoformat()}" if since else ""
    return report, f"replay of the store{window}: baseline what was done, candidate {args.rules}"
