"""Evaluate metric samples against the table's metric rules and raise internal alerts.

State is per series (metric name + sorted labels) and lives in memory only. Time is the
samples' own ``ts``: ``for`` is measured between sample times, so evaluation is
deterministic and a replay of the same samples raises the same alerts (same ``startsAt``,
same fingerprint), which the inbox then absorbs as re-deliveries.

- A series is live once a sample of a metric some rule watches arrives; the rules whose
  label matchers select it are bound to it then, not matched again per sample.
- At most ``max_series`` series are live. A sample of a new series past that is counted
  (``series_limit``) and not evaluated.
- A series with no sample for ``stale_after_s`` of sample time (measured against the newest
  ``ts`` seen on any series) is forgotten; if it was firing, its alert is resolved.
- A sample not newer than its series' last one (out of order, or a replay) is dropped and
  counted (``out_of_order``): evaluating it would move the series back in time.
- A sample more than ``max_future_s`` ahead of the wall clock is dropped (``future``): it
  would otherwise make every other series look stale.

Speed: most samples change nothing but their series' ``last_ts``: every watch idle and the
value on the quiet side of every threshold. A batch made only of such samples is handled by
``_observe_calm`` in C-level passes (``map``/``zip``), with no Python code per sample; any
other batch goes sample by sample. Series are found by their label values under the label
names in the producer's order (``_layouts``), so the sort into the canonical key happens
once per series; a batch repeating a calm batch's label sets is found by one key (``Repeats``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, lt
from typing import cast

from responder.engine.series import (
    Columns,
    RepeatKey,
    Repeats,
    Series,
    SeriesKey,
    calm_range,
    interned,
    value_key,
    values_of,
    watches_for,
)
from responder.model import Alert
from responder.rules.table import Rule, RuleTable

Sample = tuple[str, Mapping[str, str], float, float]
"""(metric name, labels, value, ts in Unix seconds)."""
OUTCOMES = ("evaluated", "ignored", "out_of_order", "series_limit", "future")
_LAST_TS = attrgetter("last_ts")


@dataclass
class Counts:
    """Running totals, flushed to Prometheus counters by the caller (cheap on the hot path)."""

    evaluated: int = 0
    ignored: int = 0
    out_of_order: int = 0
    series_limit: int = 0
    future: int = 0
    forgotten: int = 0


class Evaluator:
    """Per-series threshold state for one rule table; sync and free of I/O."""

    def __init__(self, table: RuleTable, *, max_series: int, stale_after_s: float,
                 max_future_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_series = max_series
        self.stale_after_s = stale_after_s
        self.max_future_s = max_future_s
        self._clock = clock
        self.counts = Counts()
        self._series: dict[SeriesKey, Series] = {}
        self._layouts: dict[tuple[str, tuple[str, ...]], dict[object, Series]] = {}
        """(metric, label names in the order samples carry them) -> label values -> series;
        at most 2 x max_series entries, rebuilt on demand."""
        self._indexed = 0
        self._active: set[Series] = set()
        """Series with a watch pending or firing."""
        self._calm: dict[str, tuple[float, float]] = {}
        """Per watched metric: the calm range of all its rules' conditions together."""
        self._repeats = Repeats(2 * max_series)
        self._newest_ts = float("-inf")
        self._swept_at = float("-inf")
        self._out: list[Alert] = []
        self.table = table
        self._by_name: dict[str, tuple[Rule, ...]] = {}
        self.bind(table)

    @property
    def live_series(self) -> int:
        return len(self._series)

    def bind(self, table: RuleTable) -> None:
        """Use a (reloaded) table. A series keeps its state for a rule whose condition is
        unchanged; series of metrics no rule watches any more are forgotten."""
        self.table = table
        by_name: dict[str, list[Rule]] = {}
        for rule in table.metric_rules:
            assert rule.metric is not None
            by_name.setdefault(rule.metric.name, []).append(rule)
        self._by_name = {name: tuple(rules) for name, rules in by_name.items()}
        self._calm = {name: calm_range(tuple(r.metric for r in rules if r.metric))
                      for name, rules in self._by_name.items()}
        self._layouts.clear()
        self._indexed = 0
        self._repeats.clear()
        for key in list(self._series):
            series = self._series[key]
            if key[0] not in self._by_name:
                del self._series[key]
                continue
            kept = {(w.rule.id, w.cond): w for w in series.watches}
            watches = []
            for w in watches_for(self._by_name.get(key[0], ()), key):
                old = kept.get((w.rule.id, w.cond))
                if old is not None:
                    w.since, w.firing = old.since, old.firing
                watches.append(w)
            series.watch(tuple(watches))
        self._active = {s for s in self._series.values() if s.lo > s.hi}

    def observe(self, samples: Iterable[Sample]) -> None:
        """Evaluate samples in order; alerts they raise wait in ``take()``."""
        rows = samples if isinstance(samples, list) else list(samples)
        if rows and not self._observe_calm(rows, None):
            self._observe_each(rows)
        self._sweep_due()

    def observe_columns(self, batch: Columns, checked: Callable[[], list[Sample]]) -> None:
        """Evaluate a batch given by columns. ``checked()`` returns its samples once the
        caller has checked them, or raises, and then nothing has changed. It is not called
        for a calm batch whose label sets, in order, are those of a calm batch taken before
        through here, which were checked then: only its series' clocks move."""
        key = Repeats.key(batch.names, batch.labels)
        if key is None or not self._observe_repeat(key, batch):
            rows = checked()
            if rows and not self._observe_calm(rows, key):
                self._observe_each(rows)
        self._sweep_due()

    def _sweep_due(self) -> None:
        if self._newest_ts - self._swept_at >= self.stale_after_s / 4:
            self.sweep()

    def _observe_repeat(self, key: RepeatKey, batch: Columns) -> bool:
        """``_observe_calm`` for a batch of the series stored under its key, unlooked-up."""
        series = self._repeats.get(key)
        return series is not None and self._take_calm(key[0], series, batch.values, batch.tss)

    def _observe_calm(self, rows: list[Sample], key: RepeatKey | None) -> bool:
        """Take the whole batch at once if it is of one metric and one set of label names, every
        sample of a live series, no series twice, and ``_take_calm`` takes it; then store its
        series under ``key``. Otherwise change nothing and return False."""
        names, labels, values, tss = zip(*rows, strict=True)
        name = names[0]
        if name not in self._calm or len(set(names)) != 1:
            return False
        # The first sample's label names; every other sample must have exactly those (in
        # any order: a series is its set of labels, and the values are read in this order).
        shape = tuple(labels[0])
        index = self._layouts.get((name, shape))
        if index is None or not shape:
            return False
        try:
            found = list(map(index.get, map(values_of(shape), labels)))
        except KeyError:
            return False
        if max(map(len, labels)) != len(shape) or None in found:
            return False
        series = cast("list[Series]", found)  # no None in it
        if len(set(series)) != len(series) or not self._take_calm(name, series, values, tss):
            return False
        if key is not None:
            self._repeats.put(key, series)
        return True

    def _take_calm(self, name: str, series: list[Series], values: tuple[float, ...],
                   tss: tuple[float, ...]) -> bool:
        """Move each series' ``last_ts`` to its sample's if that is all the samples change
        (every watch idle, each sample newer than its series' last and not ahead of the clock,
        each value strictly inside the calm range of all the metric's rules), else False."""
        calm = self._calm.get(name)
        newest = max(tss)
        # A NaN can hide from min() and max(); it is calm anyway: every comparison with it is
        # False, which leaves an idle watch idle.
        if (calm is None or newest > self._clock() + self.max_future_s
                or not (calm[0] < min(values) and max(values) < calm[1])
                or (self._active and not self._active.isdisjoint(series))
                or not all(map(lt, map(_LAST_TS, series), tss))):
            return False
        any(map(setattr, series, repeat("last_ts"), tss))  # setattr returns None: all run
        self.counts.evaluated += len(series)
        if newest > self._newest_ts:  # noqa: PLR1730 - the same test as _observe_each's
            self._newest_ts = newest
        return True

    def _observe_each(self, rows: list[Sample]) -> None:
        by_name, layouts, counts = self._by_name, self._layouts, self.counts
        horizon = self._clock() + self.max_future_s
        newest = self._newest_ts
        for name, labels, value, ts in rows:
            if name not in by_name:
                counts.ignored += 1
                continue
            if ts > horizon:
                counts.future += 1
                continue
            index = layouts.get((name, tuple(labels)))
            series = index.get(value_key(labels)) if index is not None else None
            if series is None:
                series = self._series_for(name, labels)
                if series is None:
                    counts.series_limit += 1
                    continue
            if ts <= series.last_ts:
                counts.out_of_order += 1
                continue
            series.last_ts = ts
            if ts > newest:  # noqa: PLR1730 - max() costs a call per sample
                newest = ts
            counts.evaluated += 1
            if not series.lo < value < series.hi:
                self._evaluate(series, value, ts)
        self._newest_ts = newest

    def _series_for(self, name: str, labels: Mapping[str, str]) -> Series | None:
        """The series of labels in a layout (names in this order) not seen for it before:
        found, or made within ``max_series``, by its canonical sorted key, then indexed
        under this layout."""
        canonical = (name, tuple(sorted(labels.items())))
        series = self._series.get(canonical)
        if series is None:
            if len(self._series) >= self.max_series:
                return None
            canonical = interned(canonical)
            series = self._series[canonical] = Series(
                canonical, watches_for(self._by_name.get(canonical[0], ()), canonical))
        if self._indexed >= 2 * self.max_series:
            self._layouts.clear()  # many layouts of the same labels: start again
            self._indexed = 0
        # The index holds the canonical key's own strings, not this sample's.
        own = dict(series.key[1])
        names = {k: k for k in own}
        shape = tuple(names[k] for k in labels)
        values = tuple(own[k] for k in shape)
        self._layouts.setdefault((series.key[0], shape), {})[
            values[0] if len(values) == 1 else values] = series
        self._indexed += 1
        return series

    def _evaluate(self, series: Series, value: float, ts: float) -> None:
        for w in series.watches:
            if w.firing:
                if not w.compare(value, w.cond.clear):
                    self._out.append(w.alert(series.key, "resolved", value, ts))
                    w.firing, w.since = False, None
            elif w.compare(value, w.cond.threshold):
                if w.since is None:
                    w.since = ts
                if ts - w.since >= w.cond.for_s:
                    w.firing = True
                    self._out.append(w.alert(series.key, "firing", value, ts))
            else:
                w.since = None
        series.settle()
        if series.lo > series.hi:
            self._active.add(series)
        else:
            self._active.discard(series)

    def sweep(self) -> None:
        """Forget series with no sample for ``stale_after_s``; resolve the firing ones."""
        self._swept_at = self._newest_ts
        cutoff = self._newest_ts - self.stale_after_s
        stale = [key for key, s in self._series.items() if s.last_ts < cutoff]
        for key in stale:
            series = self._series.pop(key)
            self._active.discard(series)
            for w in series.watches:
                if w.firing:
                    self._out.append(w.alert(key, "resolved", None, series.last_ts))
        if stale:
            self._repeats.clear()  # its entries hold the forgotten series
            self._layouts = {lk: {v: s for v, s in index.items() if s.last_ts >= cutoff}
                             for lk, index in self._layouts.items()}
            self._indexed = sum(map(len, self._layouts.values()))
        self.counts.forgotten += len(stale)

    def take(self) -> list[Alert]:
        """The alerts raised since the last call, in the order they were raised."""
        out, self._out = self._out, []
        return out
