"""The blast-radius guard: past a number of new incidents per window, stop acting per key.

Hundreds of per-key containments in a minute usually mean the alerting, not the system,
is broken, or that the scope is really global. Past the limit a rule runs its storm step
(for example one global SOFT_HALT) instead, or pauses and pages when it has none.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Mapping

from responder.rules.table import Rule


class StormGuard:
    """Counts new (rule, scope) containments in a sliding window, per rule and overall.

    With several replicas each sees only the alerts it received. ``absorb`` takes what the
    store says every replica opened in the window; a count is then the larger of this
    replica's own and the store's plus what this replica admitted since that reading.
    """

    def __init__(self, window_s: float, global_max: int) -> None:
        self.window_s = window_s
        self.global_max = global_max
        self._seen: dict[tuple[str, str], float] = {}
        self._all: deque[float] = deque()
        self._by_rule: dict[str, deque[float]] = {}
        self._shared_by_rule: Mapping[str, int] = {}
        self._shared_all = 0
        self._shared_at = float("-inf")

    def absorb(self, opened_by_rule: Mapping[str, int], now: float | None = None) -> None:
        """Containments every replica opened in the last window, per rule (from the store)."""
        self._shared_by_rule = dict(opened_by_rule)
        self._shared_all = sum(opened_by_rule.values())
        self._shared_at = time.monotonic() if now is None else now

    def _count(self, mine: deque[float], shared: int) -> int:
        since = len(mine) - bisect.bisect_right(mine, self._shared_at)
        return max(len(mine), shared + since)

    def admit(self, rule: Rule, scope: str, now: float | None = None) -> str | None:
        """None if this containment may go ahead, else why the guard refuses it."""
        now = time.monotonic() if now is None else now
        self._prune(now)
        seen_at = self._seen.get((rule.id, scope))
        if seen_at is not None and seen_at >= now - self.window_s:
            return None  # already admitted in this window: a repeat, not a new containment
        per_rule = self._by_rule.setdefault(rule.id, deque())
        rule_count = self._count(per_rule, self._shared_by_rule.get(rule.id, 0))
        if rule.storm_max is not None and rule_count >= rule.storm_max:
            return (f"rule {rule.id} already contained {rule_count} scopes in"
                    f" {self.window_s:g} s (limit {rule.storm_max})")
        all_count = self._count(self._all, self._shared_all)
        if all_count >= self.global_max:
            return (f"{all_count} containments in {self.window_s:g} s across all rules"
                    f" (limit {self.global_max})")
        self._seen[(rule.id, scope)] = now
        per_rule.append(now)
        self._all.append(now)
        return None

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        while self._all and self._all[0] < horizon:
            self._all.popleft()
        for times in self._by_rule.values():
            while times and times[0] < horizon:
                times.popleft()
        # Insertion order is admission order (a key is only admitted again once pruned).
        while self._seen:
            oldest = next(iter(self._seen))
            if self._seen[oldest] >= horizon:
                break
            del self._seen[oldest]
