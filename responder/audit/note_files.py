"""Finding checkpoint notes in files: a note's own text, a sink's delivery, a bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from responder.errors import CheckpointInvalid


def read_notes(path: Path) -> list[tuple[str, str]]:
    """Checkpoint notes in a file or directory: note text, a sink's delivery, a bundle."""
    if path.is_dir():
        found: list[tuple[str, str]] = []
        for child in sorted(p for p in path.iterdir() if p.is_file()):
            found += notes_in(child, quiet=True)
        return found
    return notes_in(path, quiet=False)


def notes_in(path: Path, *, quiet: bool) -> list[tuple[str, str]]:
    """(label, note) of the note one file holds; none if ``quiet``, else an error, when it
    holds no checkpoint."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointInvalid(f"{path}: cannot read it ({e})") from e
    note: Any = text
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        bundle = data.get("bundle", data) if isinstance(data, dict) else {}
        note = data.get("note") if isinstance(data, dict) and "note" in data else (
            (bundle.get("audit") or {}).get("checkpoint") if isinstance(bundle, dict) else None)
    if isinstance(note, str) and "\n\n" in note:
        return [(str(path), note)]
    if quiet:
        return []
    raise CheckpointInvalid(f"{path}: holds no checkpoint")
