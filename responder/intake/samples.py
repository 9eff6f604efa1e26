"""Metric samples from the metrics topic: ``{name, labels, value, ts}``, one or a batch.

A message is one sample object, a JSON array of them, or ``{"samples": [...]}`` (schema in
``docs/schemas/kafka-metric-samples.schema.json``). The whole message is checked before any
of it is evaluated, so a message is either evaluated or dead-lettered, never half.
Checks are written out by hand: this runs for every sample, and a model per sample would
cost more than the evaluation. A message of samples in the usual shape (all four fields,
float value and ts, names seen before, ASCII label values) is checked column by column in
C-level passes (``_columns``, then ``_labels_ok``); any other message, or one that fails
there, is checked sample by sample, which alone decides what is refused and names the bad
field. ``observe_message`` leaves the label check to the evaluator's call: a batch whose
label sets repeat those of one it took before needs none (``Evaluator.observe_columns``).
"""

from __future__ import annotations

import json
import re
from itertools import chain
from math import isnan
from operator import itemgetter
from typing import Any

from responder.engine.series import Columns
from responder.engine.thresholds import Evaluator, Sample
from responder.intake.alertmanager import PayloadError
from responder.intake.message import decode_message
from responder.jsontext import _has_long_digits

MAX_LABELS = 64
MAX_LABEL_VALUE = 1024
MAX_INT_VALUE = 2**63
MAX_TS = 1e11  # the year 5138: a larger ts is a unit mistake (ms or ns), not a time
_FIELDS = frozenset({"name", "labels", "value", "ts"})
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_KNOWN_MAX = 10_000
_EMPTY: dict[str, str] = {}
_ROW = itemgetter("name", "labels", "value", "ts")
_UNPARSED = object()


_known_metrics: set[str] = set()
_known_labels: set[str] = set()


def _name_ok(name: object, pattern: re.Pattern[str], known: set[str]) -> bool:
    """Check a name once; names found valid are remembered (bounded), so the regex runs once
    per name, not once per sample."""
    if type(name) is not str or len(name) > 200 or not pattern.fullmatch(name):
        return False
    if len(known) < _KNOWN_MAX:
        known.add(name)
    return True


def parse_samples(value: bytes | None, max_bytes: int) -> list[Sample]:
    """The samples one message carries, or PayloadError naming the first bad field."""
    plain = _plain(value, max_bytes)
    usual = _columns(_sample_list(plain))
    if usual is not None:
        return _labels_checked(value, max_bytes, plain, *usual)
    return _parsed(value, max_bytes, plain)


def observe_message(evaluator: Evaluator, value: bytes | None, max_bytes: int) -> None:
    """Give the evaluator the samples one message carries, or raise PayloadError naming the
    first bad field, having given it none."""
    plain = _plain(value, max_bytes)
    usual = _columns(_sample_list(plain))
    if usual is None:
        evaluator.observe(_parsed(value, max_bytes, plain))
    else:
        rows, columns = usual
        evaluator.observe_columns(columns, lambda: _labels_checked(
            value, max_bytes, plain, rows, columns))


def _plain(value: bytes | None, max_bytes: int) -> Any:
    """A plain parse, without jsontext's scan for long runs of digits, or _UNPARSED: a
    message _columns takes has no integer in it at all, so the scan could not refuse it."""
    if value is None or len(value) > max_bytes:
        return _UNPARSED
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return _UNPARSED  # malformed: decode_message says how, as it always has


def _parsed(value: bytes | None, max_bytes: int, plain: Any) -> list[Sample]:
    """The samples, checked one by one, of what decode_message makes of the message."""
    if plain is not _UNPARSED and not _has_long_digits(value or b""):
        return _checked(plain)  # what decode_message would have returned
    # The shape checks never recurse: no depth walk on this hot path.
    return _checked(decode_message(value, max_bytes, max_depth=None))


def _labels_checked(value: bytes | None, max_bytes: int, plain: Any, rows: list[Sample],
                    columns: Columns) -> list[Sample]:
    """The samples _columns found in the usual shape, once their labels pass too."""
    if _labels_ok(columns.labels):
        return rows
    return _parsed(value, max_bytes, plain)


def _sample_list(data: Any) -> list[Any]:
    """The samples of a well-shaped message, for _columns; [] (which it declines) otherwise."""
    if type(data) is dict:
        data = data.get("samples") if len(data) == 1 else None
    return data if type(data) is list else []


def _checked(data: Any) -> list[Sample]:
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
    fast = _columns(data)
    if fast is not None and _labels_ok(fast[1].labels):
        return fast[0]
    try:
        return [_sample(item) for item in data]
    except _Bad:
        pass
    for i, item in enumerate(data):  # only for a bad message: find which sample, to name it
        try:
            _sample(item)
        except _Bad as e:
            raise PayloadError(f"{prefix}{i}{e.field}", e.message) from None
    raise AssertionError("unreachable")


def _columns(data: list[Any]) -> tuple[list[Sample], Columns] | None:
    """The samples and their columns, if every one passes the same checks as ``_sample``
    in its usual shape, but for its labels (``_labels_ok``); None (not an error) for
    anything else, which ``_sample`` then checks one by one."""
    try:
        rows: list[Sample] = list(map(_ROW, data))  # TypeError: an item is not an object
        names, labels, values, tss = zip(*rows, strict=True)
    except (KeyError, TypeError, ValueError):  # ValueError: no samples to unpack
        return None
    if (max(map(len, data)) != 4 or not _known_metrics.issuperset(names)
            or set(map(type, values)) != {float} or set(map(type, tss)) != {float}
            or isnan(sum(values)) or isnan(sum(tss))  # any NaN makes the sum NaN
            or not min(tss) > 0 or not max(tss) < MAX_TS):
        return None
    return rows, Columns(names, labels, values, tss)


def _labels_ok(labels: tuple[Any, ...]) -> bool:
    """Whether every sample's labels pass ``_check_labels`` in their usual shape: known
    names, ASCII values; False (not an error) also for any other shape."""
    try:
        # TypeError: labels not an object, or a label value not a string.
        joined = "".join(chain.from_iterable(map(dict.values, labels)))
    except TypeError:
        return False
    return not (max(map(len, labels)) > MAX_LABELS
                or not _known_labels.issuperset(chain.from_iterable(labels))
                or not joined.isascii() or "\x00" in joined
                or (len(joined) > MAX_LABEL_VALUE and max(map(len, chain.from_iterable(
                    map(dict.values, labels)))) > MAX_LABEL_VALUE))


class _Bad(Exception):
    """A sample failed a check; parse_samples then names it by its index."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def _sample(item: Any) -> Sample:
    if type(item) is not dict:
        raise _Bad("", "a sample must be an object")
    try:
        name: Any = item["name"]
        number: Any = item["value"]
        ts: Any = item["ts"]
    except KeyError:
        raise _Bad("", _unknown(item)) from None
    labels: Any = item.get("labels", _EMPTY)
    if len(item) != (4 if "labels" in item else 3):
        raise _Bad("", _unknown(item))
    if name not in _known_metrics and not _name_ok(name, _METRIC_NAME, _known_metrics):
        raise _Bad(".name", "must be a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
    _check_labels(labels)
    if type(number) is not float:
        # An int may be too large for a float; bool is an int but not a number here.
        if type(number) is not int or not -MAX_INT_VALUE < number < MAX_INT_VALUE:
            raise _Bad(".value", "must be a number")
        number = float(number)
    elif number != number:  # noqa: PLR0124 - NaN, without a call per sample
        raise _Bad(".value", "must be a number, not NaN")
    if type(ts) is not float:
        if type(ts) is not int:
            raise _Bad(".ts", "must be Unix seconds (a positive number, not ms)")
        ts = float(ts)
    if not 0 < ts < MAX_TS:
        raise _Bad(".ts", "must be Unix seconds (a positive number, not ms)")
    return name, labels, number, ts


def _check_labels(labels: Any) -> None:
    if type(labels) is not dict or len(labels) > MAX_LABELS:
        raise _Bad(".labels", f"must be an object of at most {MAX_LABELS} string labels")
    for label, text in labels.items():
        if label not in _known_labels and not _name_ok(label, _LABEL_NAME, _known_labels):
            raise _Bad(".labels", f"bad label name {label!r:.80}")
        if type(text) is not str or len(text) > MAX_LABEL_VALUE or not (
                (text.isascii() and "\x00" not in text) or _storable(text)):
            raise _Bad(f".labels.{label}",
                       f"must be a string of at most {MAX_LABEL_VALUE} characters")


def _unknown(item: dict[str, Any]) -> str:
    extra = sorted(str(k) for k in item.keys() - _FIELDS)
    if extra:
        return f"unknown field(s): {', '.join(extra)}"
    return f"missing field(s): {', '.join(sorted(_FIELDS - {'labels'} - item.keys()))}"


def _storable(text: str) -> bool:
    """No NUL and no lone surrogate: PostgreSQL must be able to store it in an alert."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text
