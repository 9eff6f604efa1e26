"""Run a rule table over events with the real planner and no target.

Incidents are kept as the store keeps them: one open per (rule, scope), and an action
already asked for by an incident is not asked again; the last of its firing alerts to
resolve, or a release, ends the incident. A call is assumed to succeed unless the same call
failed at the time, in which case the rule's escalation is asked for, as the executor would.

Metric samples go through the table's own threshold evaluator, in order, with sample time
driving ``for`` as in the daemon; the internal alerts it raises are planned like any other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Set

from responder.engine.planner import PlannedStep, decide
from responder.engine.policy import Policy
from responder.engine.thresholds import Evaluator
from responder.model import Alert
from responder.replay.events import Action, CloseEvent, Event, Observed, SampleEvent
from responder.rules.table import RuleTable

IncidentKey = tuple[str, str]  # (rule id, scope)
MAX_SERIES = 100_000
STALE_AFTER_S = 300.0


class Shadow:
    """One rule table's view of the events fed to it."""

    def __init__(self, table: RuleTable,
                 open_incidents: Mapping[IncidentKey, Set[Action]] | None = None, *,
                 max_series: int = MAX_SERIES, stale_after_s: float = STALE_AFTER_S) -> None:
        self.table = table
        self._open: dict[IncidentKey, set[Action]] = {
            k: set(v) for k, v in (open_incidents or {}).items()}
        # Fingerprints firing per incident; unknown (absent) for incidents open at the start,
        # which end at their first resolved alert, as the store's untracked ones do.
        self._firing: dict[IncidentKey, set[str]] = {}
        # Samples in a file are past: none is "from the future", whatever the wall clock says.
        self._evaluator = Evaluator(table, max_series=max_series, stale_after_s=stale_after_s,
                                    max_future_s=math.inf)

    def feed(self, event: Event, failing: Set[Action] = frozenset()) -> Observed | None:
        """What the table asks for an alert (None for other events)."""
        if isinstance(event, CloseEvent):
            self._open.pop((event.rule_id, event.scope), None)
            self._firing.pop((event.rule_id, event.scope), None)
            return None
        if isinstance(event, SampleEvent):
            return None
        return self.plan(event.alert, failing)

    def observe(self, event: SampleEvent) -> list[tuple[Alert, Observed]]:
        """The internal alerts a sample raises under this table, and what each asks for."""
        self._evaluator.observe([event.sample])
        return [(alert, self.plan(alert)) for alert in self._evaluator.take()]

    def plan(self, alert: Alert, failing: Set[Action] = frozenset()) -> Observed:
        seen = Observed()
        # No storm guard and no global mode: replay shows what the rules ask for.
        for d in decide(alert, self.table, Policy()):
            seen.matched.add(d.rule.id)
            incident = (d.rule.id, d.scope)
            if d.action == "resolve":
                firing = self._firing.get(incident)
                if firing is not None:
                    firing.discard(alert.fingerprint)
                    if firing:
                        continue  # another alert of the incident still fires
                self._open.pop(incident, None)
                self._firing.pop(incident, None)
                continue
            asked = self._open.setdefault(incident, set())
            self._firing.setdefault(incident, set()).add(alert.fingerprint)
            if d.action == "contain":
                for planned in d.steps:
                    self._ask(seen, asked, d.rule.id, planned, failing)
        return seen

    def _ask(self, seen: Observed, asked: set[Action], rule_id: str, planned: PlannedStep,
             failing: Set[Action]) -> None:
        action = Action(planned.step.control.name, planned.key, planned.step.level)
        if action in asked:
            return
        asked.add(action)
        seen.asked.setdefault(action, rule_id)
        if action in failing and planned.escalation is not None:
            step, key = planned.escalation
            self._ask(seen, asked, rule_id, PlannedStep("escalation", -1, step, key, None),
                      failing)
