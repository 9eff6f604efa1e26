"""Metric rules a candidate changes, and what that means for a replay.

A metric rule's *condition* (metric, label matchers, op, threshold, ``for``, ``clear``) is
written into every internal alert it raises (the ``summary`` annotation), so a recorded
internal alert says under which condition it was raised. The store keeps no samples: when
the candidate's condition differs, whether and when its rule would have fired cannot be
known from the store, and such alerts are left out of a store replay rather than planned
as if the candidate had raised them.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, field

from responder.replay.events import AlertEvent, Event
from responder.rules.table import METRICS_SOURCE, Rule, RuleTable


def condition(rule: Rule) -> str:
    """The condition as internal alerts carry it (annotation ``summary``)."""
    assert rule.metric is not None
    return f"{rule.metric.name}: {rule.metric.describe()}"


def changed(before: RuleTable, after: RuleTable) -> dict[str, str]:
    """Candidate metric rules whose condition or alert name differs, by id: "was -> now"."""
    was = {r.id: r for r in before.metric_rules}
    out = {}
    for rule in after.metric_rules:
        old = was.get(rule.id)
        if old is None:
            out[rule.id] = f"new: {condition(rule)}"
        elif old.metric != rule.metric:
            out[rule.id] = _change(old, rule)
    return out


def _change(old: Rule, new: Rule) -> str:
    assert old.metric is not None
    assert new.metric is not None
    if old.metric.alertname == new.metric.alertname:
        return f"{old.metric.describe()} -> {new.metric.describe()}"
    return (f"{old.metric.alertname}: {old.metric.describe()} -> {new.metric.alertname}:"
            f" {new.metric.describe()}")


@dataclass
class StoreMetricAlerts:
    """Recorded internal alerts a store replay leaves out, by the candidate rule's id."""

    skipped: set[int] = field(default_factory=set)
    by_rule: dict[str, int] = field(default_factory=dict)
    recorded: dict[str, str] = field(default_factory=dict)
    """For each rule with skipped alerts, the condition they were raised under."""


def unreplayable(events: Sequence[Event], candidate: RuleTable) -> StoreMetricAlerts:
    """The recorded internal alerts whose rule the candidate has with another condition.

    One whose rule the candidate no longer has stays in: no rule means no alert, so its
    actions are rightly reported missing.
    """
    out = StoreMetricAlerts()
    for i, event in enumerate(events):
        if not isinstance(event, AlertEvent) or event.alert.source != METRICS_SOURCE:
            continue
        alert = event.alert
        recorded = alert.annotations.get("summary", "")
        rules = candidate.match(alert.labels, METRICS_SOURCE)
        if rules:
            rule_id = rules[0].id
            if condition(rules[0]) == recorded:
                continue
        else:
            rule = candidate.rule(alert.annotations.get("rule", ""))
            if rule is None or rule.metric is None:
                continue
            rule_id = rule.id  # the same rule, raising under another alert name
        out.skipped.add(i)
        out.by_rule[rule_id] = out.by_rule.get(rule_id, 0) + 1
        out.recorded.setdefault(rule_id, recorded)
    return out


def _recorded_change(recorded: str, rule: Rule | None) -> str:
    # The summary is "<metric>: <condition>", and the condition names the metric again.
    was = recorded.partition(": ")[2] or recorded or "unknown"
    now = rule.metric.describe() if rule is not None and rule.metric is not None else "none"
    return f"recorded under {was} -> {now}"


def store_notes(found: StoreMetricAlerts, changes: dict[str, str] | None,
                candidate: RuleTable) -> list[str]:
    """Plain notes on what a store replay cannot show about metric rules. ``changes`` is
    None when there is no table in force to compare with: then only the recorded alerts
    tell that a rule changed."""
    notes = []
    rule_ids = sorted(found.by_rule.keys() | (changes or {}).keys())
    for rule_id in rule_ids:
        rule = candidate.rule(rule_id)
        what = (changes or {}).get(rule_id) or _recorded_change(found.recorded[rule_id], rule)
        count = found.by_rule.get(rule_id, 0)
        left_out = f"; {count} of its recorded alerts not replayed" if count else ""
        notes.append(f"metric rule {rule_id} changed ({what}): the store keeps no samples, so"
                     f" a store replay cannot show when it would fire{left_out}. Replay the"
                     " samples with --from FILE.")
    return notes


def file_notes(sampled: Set[str], changes: dict[str, str], candidate: RuleTable) -> list[str]:
    """Notes for changed metric rules whose metric the input has no sample of."""
    notes = []
    for rule_id, what in sorted(changes.items()):
        rule = candidate.rule(rule_id)
        if rule is not None and rule.metric is not None and rule.metric.name not in sampled:
            notes.append(f"metric rule {rule_id} changed ({what}), but the input holds no"
                         f" {rule.metric.name} samples, so it was not evaluated.")
    return notes
