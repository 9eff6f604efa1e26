"""A metric series' live state: its watches (one rule each), the calm range between its
thresholds, the keys series are found and interned by, and the series of batches seen
before (engine/thresholds.py)."""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

from responder.model import Alert, Status
from responder.rules.table import METRICS_SOURCE, MetricCondition, Rule

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
"""(metric name, sorted label pairs)."""
INF = float("inf")
NEVER_CALM = (INF, -INF)
RepeatKey = tuple[str, int, tuple[str, ...], str]
"""(metric name, samples, label names, every label value joined by NUL), see Repeats."""


class Columns(NamedTuple):
    """A batch of samples by column: ``zip(*columns)`` is its samples."""

    names: tuple[str, ...]
    labels: tuple[Mapping[str, str], ...]
    values: tuple[float, ...]
    tss: tuple[float, ...]


def rfc3339(ts: float) -> str:
    """Sample time as the RFC 3339 text alerts carry (microseconds, UTC)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Watch:
    """One rule's state on one series: pending since a time, or firing."""

    __slots__ = ("compare", "cond", "firing", "rule", "since")

    def __init__(self, rule: Rule, cond: MetricCondition) -> None:
        self.rule = rule
        self.cond = cond
        self.compare = cond.compare
        self.since: float | None = None
        self.firing = False

    def alert(self, key: SeriesKey, status: Status, value: float | None, ts: float) -> Alert:
        """The alert this watch raises on its series: firing, or resolved (by a value, or
        by the series going stale when value is None)."""
        assert self.since is not None
        labels = dict(key[1])
        fingerprint = hashlib.sha256(json.dumps([self.rule.id, labels], sort_keys=True).encode())
        labels["alertname"] = self.cond.alertname
        annotations = {"summary": f"{key[0]}: {self.cond.describe()}", "rule": self.rule.id}
        if value is not None:
            annotations["value"] = f"{value:g}"
        else:
            annotations["resolved_by"] = "stale"
        return Alert(
            source=METRICS_SOURCE, fingerprint=fingerprint.hexdigest()[:16], status=status,
            labels=labels, annotations=annotations, starts_at=rfc3339(self.since),
            ends_at=rfc3339(ts) if status == "resolved" else "")


def watches_for(rules: Sequence[Rule], key: SeriesKey) -> tuple[Watch, ...]:
    """A watch for each of the metric's rules whose label matchers select the series."""
    labels = dict(key[1])
    watches = []
    for rule in rules:
        assert rule.metric is not None
        if rule.metric.selects(labels):
            watches.append(Watch(rule, rule.metric))
    return tuple(watches)


class Series:
    """A live series. While every watch is idle, a value strictly between ``lo`` and ``hi``
    crosses no threshold and so changes nothing; otherwise ``lo > hi`` and every value is
    evaluated."""

    __slots__ = ("calm", "hi", "key", "last_ts", "lo", "watches")

    def __init__(self, key: SeriesKey, watches: tuple[Watch, ...]) -> None:
        self.key = key
        self.last_ts = -INF
        self.watch(watches)

    def watch(self, watches: tuple[Watch, ...]) -> None:
        self.watches = watches
        self.calm = calm_range(tuple(w.cond for w in watches))
        self.settle()

    def settle(self) -> None:
        idle = all(w.since is None and not w.firing for w in self.watches)
        self.lo, self.hi = self.calm if idle else NEVER_CALM


@functools.lru_cache(maxsize=256)
def calm_range(conds: tuple[MetricCondition, ...]) -> tuple[float, float]:
    """(lo, hi): a value strictly between crosses none of the thresholds. Shared by every
    series of the same conditions, which saves a tuple per series."""
    lo, hi = -INF, INF
    for cond in conds:
        if cond.op in (">", ">="):
            hi = min(hi, cond.threshold)
        else:
            lo = max(lo, cond.threshold)
    return lo, hi



def value_key(labels: Mapping[str, str]) -> object:
    """Label values in the samples' order, as ``values_of(shape)`` returns them."""
    values = tuple(labels.values())
    return values[0] if len(values) == 1 else values


@functools.lru_cache(maxsize=256)
def values_of(shape: tuple[str, ...]) -> Callable[[Mapping[str, str]], object]:
    return itemgetter(*shape)


def interned(key: SeriesKey) -> SeriesKey:
    """The key of a new series with interned label names: series share those strings."""
    return sys.intern(key[0]), tuple((sys.intern(k), v) for k, v in key[1])


class Repeats:
    """The series, in order, of calm batches taken before, by the batch's label sets.

    A producer sends the same series in the same order and batches each round; Prometheus'
    scrape cache keeps a target's series by their text for the same reason. A batch whose
    key is here is of exactly those label sets, so it needs neither a lookup per sample
    nor, since the entry was made from samples that were checked, a check of its labels.
    The key is one string, compared by one memcmp instead of one cold lookup per sample.
    Entries hold live series: the evaluator clears them all whenever it forgets a series.
    At most two references per allowed series, so the keys hold at most twice the label
    values of the live series (about 25 bytes a series in bench/metrics.py).
    """

    def __init__(self, max_refs: int) -> None:
        self.max_refs = max_refs
        self._runs: dict[RepeatKey, list[Series]] = {}
        self._refs = 0

    @staticmethod
    def key(names: Sequence[str], labels: Sequence[Mapping[str, str]]) -> RepeatKey | None:
        """The key of a batch of one metric whose samples all have the first one's label
        names (and are at least one), or None. The value text splits back into the values
        in one way only: a stored key comes from values without NUL, and a batch with the
        same name, samples and label names has as many values, so as many separators."""
        try:
            shape = tuple(labels[0])
            if not shape or names.count(names[0]) != len(names):
                return None
            get: Any = values_of(shape)  # KeyError: a label name missing
            text = ("\0".join(map(get, labels)) if len(shape) == 1
                    else "\0".join(chain.from_iterable(map(get, labels))))
            # Each has the first one's label names, so no fewer: no more either.
            if sum(map(len, labels)) != len(shape) * len(labels):
                return None
        except (IndexError, KeyError, TypeError):  # TypeError: not an object, or no string
            return None
        return names[0], len(labels), shape, text

    def get(self, key: RepeatKey) -> list[Series] | None:
        return self._runs.get(key)

    def put(self, key: RepeatKey, series: list[Series]) -> None:
        if key in self._runs:
            return
        if self._refs + len(series) > self.max_refs:
            self.clear()  # many batchings of the same series: start again
        self._runs[key] = series
        self._refs += len(series)

    def clear(self) -> None:
        self._runs.clear()
        self._refs = 0
