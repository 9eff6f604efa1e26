"""A metric series' live state: its watches (one rule each), the calm range between its
thresholds, and the keys series are found and interned by (engine/thresholds.py)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from operator import itemgetter

from responder.rules.table import MetricCondition, Rule

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
"""(metric name, sorted label pairs)."""
INF = float("inf")
NEVER_CALM = (INF, -INF)


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
