"""Alerts and metric samples from a file, as one JSON document (an object or a list) or as
JSON lines: Alertmanager payloads, alerts in responder's own shape, and samples in the
metrics topic's shapes (one sample, an array of samples, or ``{"samples": [...]}``), which
are checked by the same parser as the topic's messages."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from responder.engine.policy import parse_time
from responder.engine.thresholds import Sample
from responder.errors import ReplayInputError
from responder.intake.alertmanager import PayloadError, payload_alerts
from responder.intake.events import normalised_alert
from responder.intake.samples import parse_samples
from responder.model import Alert
from responder.replay.events import AlertEvent, Event, SampleEvent

SOURCE = "replay"


def read_file(path: Path, since: datetime | None = None) -> list[Event]:
    """Every alert and sample in the file, in order; alerts that started before ``since``
    and samples taken before it are left out."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ReplayInputError(f"{path}: cannot read: {e}") from e
    start = since.timestamp() if since is not None else -math.inf
    events: list[Event] = []
    for where, item in _items(path, text):
        ref = f"{path.name}:{where}"
        if _is_samples(item):
            for i, sample in enumerate(_samples(path, where, item)):
                if sample[3] >= start:
                    events.append(SampleEvent(sample, ref + (f"#{i}" if i else ""),
                                              sample_time(sample[3])))
            continue
        for i, alert in enumerate(_alerts(path, where, item)):
            started = parse_time(alert.starts_at)
            if since is not None and started is not None and started < since:
                continue
            events.append(AlertEvent(alert, ref + (f"#{i}" if i else ""), alert.starts_at))
    return events


def sample_time(ts: float) -> str:
    """A sample's time in RFC 3339, to the second unless it has a fraction."""
    at = datetime.fromtimestamp(ts, UTC)
    text = at.isoformat(timespec="seconds" if ts == int(ts) else "milliseconds")
    return text.replace("+00:00", "Z")


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


def _is_samples(item: Any) -> bool:
    # Alerts never carry a top-level "name"; an array in an item is a batch of samples.
    return isinstance(item, list) or (isinstance(item, dict)
                                      and ("samples" in item or "name" in item))


def _samples(path: Path, where: str, item: Any) -> list[Sample]:
    raw = json.dumps(item).encode()
    try:
        return parse_samples(raw, len(raw))
    except PayloadError as e:
        raise ReplayInputError(f"{path}:{where}: {e}") from e


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
