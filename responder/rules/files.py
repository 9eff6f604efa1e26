"""Rule files on disk: which files, the table's hash over them, and each parsed with the
line of every node, so a problem names its file and line."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from responder.errors import RuleProblem
from responder.rules.schema import RuleFileSpec

Loc = tuple[str | int, ...]
SKIPPED_DIRS = frozenset({"fixtures", "tests"})


@dataclass
class Source:
    """One rule file: its path, the YAML as parsed (with positions) and the checked spec."""

    path: str
    raw: Any
    spec: RuleFileSpec | None


def rule_files(rules_dir: Path) -> list[Path]:
    """YAML files under the directory, in a stable order; fixture folders are not rules."""
    found = [
        p
        for p in rules_dir.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        and not SKIPPED_DIRS.intersection(p.relative_to(rules_dir).parts[:-1])
    ]
    return sorted(found)


def bundle_hash(rules_dir: Path, files: Sequence[Path]) -> str:
    """SHA-256 over every rule file's relative name and content: the table's identity."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(rules_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def parse_file(path: Path, problems: list[RuleProblem]) -> Source:
    yaml = YAML(typ="rt")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        problems.append(RuleProblem(str(path), line, f"YAML: {e.problem or e.context}"))
        return Source(str(path), None, None)
    except (OSError, UnicodeDecodeError) as e:
        problems.append(RuleProblem(str(path), 0, f"cannot read: {e}"))
        return Source(str(path), None, None)
    if raw is None:
        raw = {}
    try:
        spec = RuleFileSpec.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc)
            problems.append(
                RuleProblem(str(path), line_of(raw, loc), f"{where}: {err['msg']}")
            )
        return Source(str(path), raw, None)
    return Source(str(path), raw, spec)


def line_of(node: Any, loc: Loc) -> int:
    """1-based line of the deepest node along loc that ruamel knows a position for."""
    line = 1
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None and isinstance(part, str) and isinstance(node, Mapping):
                if part in node:
                    line = lc.key(part)[0] + 1
            elif lc is not None and isinstance(part, int) and isinstance(node, list):
                line = lc.item(part)[0] + 1
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    return line
