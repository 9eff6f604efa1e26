"""Keep a simulator's levels in a JSON file, so `make run` restarted finds the demo target
as responder left it (a real target keeps its state; a forgetful one means drift pages).

Written after every applied change, by rename, so a killed simulator leaves the last
whole file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def load(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged file: start as a fresh target would
    return found if isinstance(found, dict) else {}


def save(path: Path | None, levels: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".tmp")
    partial.write_text(json.dumps(levels, sort_keys=True), encoding="utf-8")
    os.replace(partial, path)
