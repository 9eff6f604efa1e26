"""Alerts from a file: Alertmanager payloads and/or alerts in responder's own shape, as one
JSON document (an object or a list) or as JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from responder.engine.policy import parse_time
from responder.errors import ReplayInputError
from responder.intake.alertmanager import PayloadError, payload_alerts
from responder.intake.events import normalised_alert
from responder.model import Alert
from responder.replay.events import AlertEvent

SOURCE = "replay"


def read_file(path: Path, since: datetime | None = None) -> list[AlertEvent]:
    """Every alert in the file, in order; alerts that started before ``since`` are left out."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ReplayInputError(f"{path}: cannot read: {e}") from e
    events = []
    for where, item in _items(path, text):
        for i, alert in enumerate(_alerts(path, where, item)):
            started = parse_time(alert.starts_at)
            if since is not None and started is not None and started < since:
                continue
            events.append(AlertEvent(alert, f"{path.name}:{where}" + (f"#{i}" if i else ""),
                                     alert.starts_at))
    return events


def _items(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    """(where, item): "item N" in a JSON list, the line number in JSON lines."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        pass
    else:
        if isinstance(whole, list):
            yield from ((f"item {i + 1}", item) for i, item in enumerate(whole))
        else:
            yield "1", whole
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield str(number), json.loads(line)
        except json.JSONDecodeError as e:
            raise ReplayInputError(f"{path}:{number}: not JSON: {e.msg}") from e


def _alerts(path: Path, where: str, item: Any) -> list[Alert]:
    if not isinstance(item, dict):
        raise ReplayInputError(f"{path}:{where}: expected a JSON object")
    try:
        if "alerts" in item:
            return payload_alerts(item)
        alert, _ = normalised_alert(item, SOURCE)
    except PayloadError as e:
        raise ReplayInputError(f"{path}:{where}: {e}") from e
    return [alert]
