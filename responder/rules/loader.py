"""Load a rules directory into a RuleTable, reporting every problem with its file and line.

The steps, each in its own module: find and parse the files (rules/files.py), verify the
signature in strict mode (rules/signing.py), keep the enabled packs (here), compile
(rules/compiler.py, controls in rules/controls.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from responder.errors import RuleError, RuleProblem
from responder.rules.compiler import Compiler
from responder.rules.files import Source, bundle_hash, line_of, parse_file, rule_files
from responder.rules.signing import verify
from responder.rules.table import RuleTable

__all__ = ["ALL_PACKS", "bundle_hash", "line_of", "load_rules", "rule_files"]

ALL_PACKS = "all"


def load_rules(
    rules_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    resolve_secrets: bool = True,
    public_keys: Sequence[Path] | None = None,
    packs: Collection[str] = (),
) -> RuleTable:
    """Parse, validate and compile the table, or raise RuleError with every problem found.

    A file that names a ``pack`` is part of the table only when that pack is in ``packs``
    (``all`` enables every pack); files without one always are. With ``public_keys``
    (strict mode) the table loads only if its detached signature verifies against one of
    them; the signature covers every file of the directory, enabled or not.
    """
    env = os.environ if env is None else env
    if not rules_dir.is_dir():
        raise RuleError([RuleProblem(str(rules_dir), 0, "rules directory does not exist")])
    files = rule_files(rules_dir)
    if not files:
        raise RuleError([RuleProblem(str(rules_dir), 0, "no rule files (*.yaml) found")])
    digest = signed = bundle_hash(rules_dir, files)
    if public_keys is not None:
        verify(rules_dir, signed, public_keys)
    problems: list[RuleProblem] = []
    sources = [parse_file(path, problems) for path in files]
    if problems:
        raise RuleError(problems)
    every = len(files)
    sources, files = _enabled(rules_dir, sources, files, packs)
    if len(files) != every:
        digest = bundle_hash(rules_dir, files)  # the table's identity: what is in force
    table = Compiler(sources, env, resolve_secrets, problems).compile(
        digest, tuple(str(f) for f in files)
    )
    if problems or table is None:
        raise RuleError(problems)
    return dataclasses.replace(table, signed_hash=signed)


def _enabled(rules_dir: Path, sources: list[Source], files: list[Path],
             packs: Collection[str]) -> tuple[list[Source], list[Path]]:
    """The files that are part of the table: those of no pack, and those of enabled packs."""
    declared = {src.spec.pack for src in sources if src.spec is not None and src.spec.pack}
    unknown = sorted(set(packs) - declared - {ALL_PACKS})
    if unknown:
        raise RuleError([RuleProblem(str(rules_dir), 0,
                                     f"no rule file declares pack {', '.join(unknown)}"
                                     f" (known: {', '.join(sorted(declared)) or 'none'})")])
    keep = [i for i, src in enumerate(sources)
            if src.spec is None or src.spec.pack is None or ALL_PACKS in packs
            or src.spec.pack in packs]
    return [sources[i] for i in keep], [files[i] for i in keep]
