"""The blast-radius guard: past a number of new incidents per window, stop acting per key.

Hundreds of per-key containments in a minute usually mean the alerting, not the system,
is broken, or that the scope is really global. Past the limit a rule runs its storm step
(for example one global SOFT_HALT) instead, or pauses and pages when it has none.
"""

from __future__ import annotations

import time
from collections import deque

from responder.rules.table import Rule


class StormGuard:
    """Counts new (rule, scope) containments in a sliding window, per rule and overall."""

    def __init__(self, window_s: float, global_max: int) -> None:
        self.window_s = window_s
        self.global_max = global_max
        self._seen: dict[tuple[str, str], float] = {}
        self._all: deque[float] = deque()
        self._by_rule: dict[str, deque[float]] = {}

    def admit(self, rule: Rule, scope: str, now: float | None = None) -> str | None:
        """None if this containment may go ahead, else why the guard refuses it."""
        now = time.monotonic() if now is None else now
        self._prune(now)
        if (rule.id, scope) in self._seen:
            return None  # already admitted in this window: a repeat, not a new containment
        per_rule = self._by_rule.setdefault(rule.id, deque())
        if rule.storm_max is not None and len(per_rule) >= rule.storm_max:
            return (f"rule {rule.id} already contained {len(per_rule)} scopes in"
                    f" {self.window_s:g} s (limit {rule.storm_max})")
        if len(self._all) >= self.global_max:
            return (f"{len(self._all)} containments in {self.window_s:g} s across all rules"
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
        if len(self._seen) > 4 * max(self.global_max, 1):
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
