"""Metric samples from the metrics topic: ``{name, labels, value, ts}``, one or a batch.

A message is one sample object, a JSON array of them, or ``{"samples": [...]}`` (schema in
``docs/schemas/kafka-metric-samples.schema.json``). The whole message is checked before any
of it is evaluated, so a message is either evaluated or dead-lettered, never half.
Checks are written out by hand: this runs for every sample, and a model per sample would
cost more than the evaluation.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from responder.engine.thresholds import Sample
from responder.intake.alertmanager import PayloadError

MAX_LABELS = 64
MAX_LABEL_VALUE = 1024
MAX_INT_VALUE = 2**63
MAX_TS = 1e11  # the year 5138: a larger ts is a unit mistake (ms or ns), not a time
_FIELDS = frozenset({"name", "labels", "value", "ts"})
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_KNOWN_MAX = 10_000
_EMPTY: dict[str, str] = {}


class _Names:
    """Names already found valid, so the regex runs once per name (bounded)."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.known: set[str] = set()

    def ok(self, name: object) -> bool:
        if name in self.known:
            return True
        if type(name) is not str or len(name) > 200 or not self.pattern.fullmatch(name):
            return False
        if len(self.known) < _KNOWN_MAX:
            self.known.add(name)
        return True


_metric_names = _Names(_METRIC_NAME)
_label_names = _Names(_LABEL_NAME)


def parse_samples(value: bytes | None, max_bytes: int) -> list[Sample]:
    """The samples one message carries, or PayloadError naming the first bad field."""
    if value is None:
        raise PayloadError("", "empty message")
    if len(value) > max_bytes:
        raise PayloadError("", f"message over {max_bytes} bytes")
    try:
        data = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PayloadError("", f"malformed JSON: {e}") from e
    if isinstance(data, dict) and "samples" in data:
        if len(data) != 1:
            raise PayloadError("", "a batch object holds only samples")
        data, prefix = data["samples"], "samples."
    elif isinstance(data, list):
        prefix = ""
    else:
        data, prefix = [data], ""
    if not isinstance(data, list):
        raise PayloadError("samples", "must be an array")
    return [_sample(item, f"{prefix}{i}") for i, item in enumerate(data)]


def _sample(item: Any, where: str) -> Sample:
    if type(item) is not dict:
        raise PayloadError(where, "a sample must be an object")
    if not item.keys() <= _FIELDS:
        raise PayloadError(where, f"unknown field(s): {', '.join(sorted(item.keys() - _FIELDS))}")
    name: Any = item.get("name")
    if not _metric_names.ok(name):
        raise PayloadError(f"{where}.name", "must be a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
    labels = item.get("labels", _EMPTY)
    if type(labels) is not dict or len(labels) > MAX_LABELS:
        raise PayloadError(f"{where}.labels", f"must be an object of at most {MAX_LABELS}"
                                              " string labels")
    for label, text in labels.items():
        if not _label_names.ok(label):
            raise PayloadError(f"{where}.labels", f"bad label name {label!r:.80}")
        if type(text) is not str or len(text) > MAX_LABEL_VALUE or not _storable(text):
            raise PayloadError(f"{where}.labels.{label}", "must be a string of at most"
                                                          f" {MAX_LABEL_VALUE} characters")
    number = item.get("value")
    if type(number) is not float:
        # An int may be too large for a float; bool is an int but not a number here.
        if type(number) is not int or not -MAX_INT_VALUE < number < MAX_INT_VALUE:
            raise PayloadError(f"{where}.value", "must be a number")
        number = float(number)
    elif math.isnan(number):
        raise PayloadError(f"{where}.value", "must be a number, not NaN")
    ts: Any = item.get("ts")
    if type(ts) not in (int, float) or not 0 < ts < MAX_TS:
        raise PayloadError(f"{where}.ts", "must be Unix seconds (a positive number, not ms)")
    return name, labels, number, float(ts)


def _storable(text: str) -> bool:
    """No NUL and no lone surrogate: PostgreSQL must be able to store it in an alert."""
    if text.isascii():
        return "\x00" not in text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text
