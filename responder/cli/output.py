"""``-o table|json`` for the reading commands, and the global options every subcommand
accepts wherever they are written (``responder actions --config FILE``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

CONFIG_HELP = "TOML settings file (or RESPONDER_CONFIG_FILE)"


def add_output(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("-o", "--output", choices=("table", "json"), default="table",
                     help="table (default) for people, json (one object per line) for tools")


def globals_everywhere(parser: argparse.ArgumentParser) -> None:
    """Let every subcommand, also those added later, take ``--config`` after its name.

    The subcommand's copy defaults to SUPPRESS so that it does not overwrite a value given
    before the subcommand's name.
    """
    for sub in _subparsers(parser):
        if not any("--config" in a.option_strings for a in sub._actions):
            sub.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                             help=CONFIG_HELP)
        globals_everywhere(sub)


def _subparsers(parser: argparse.ArgumentParser) -> Iterable[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.values()


def every_option(parser: argparse.ArgumentParser,
                 path: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], argparse.Action]]:
    """Each (command path, option) of the parser tree, for the help-text test."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_option(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def print_rows(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, int]],
               output: str) -> None:
    """Rows as aligned columns (heading, field, width; width 0: the rest of the line) or as
    JSON lines."""
    if output == "json":
        for row in rows:
            print(json.dumps(row, default=str, ensure_ascii=False))
        return
    print("  ".join(f"{h:{w}}" if w else h for h, _, w in columns).rstrip())
    for row in rows:
        cells = []
        for _, name, width in columns:
            value = "" if row.get(name) is None else str(row[name])
            cells.append(f"{value[:width]:{width}}" if width else value)
        print("  ".join(cells).rstrip())
