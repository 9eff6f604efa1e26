"""Compare what was done (or what a baseline table asks) with what a candidate table asks,
alert by alert, and for metric samples, internal alert by internal alert."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

from responder.replay.events import AlertEvent, Event, Observed, SampleEvent
from responder.replay.raised import Raised, differences
from responder.replay.report import AlertDiff, Difference, Report, compare
from responder.replay.shadow import Shadow

__all__ = ["AlertDiff", "Difference", "Report", "compare", "replay"]


def replay(events: Sequence[Event], candidate: Shadow,
           baseline: Shadow | Mapping[int, Observed],
           skipped: Set[int] = frozenset()) -> Report:
    """Feed every event to the candidate (and a baseline table, if given) and compare.

    ``skipped``: positions of alerts that are not replayed (see the store's metric alerts).
    """
    report = Report()
    found: list[tuple[int, AlertDiff]] = []
    raised_before: list[Raised] = []
    raised_after: list[Raised] = []
    for i, event in enumerate(events):
        if i in skipped:
            continue
        if isinstance(event, SampleEvent):
            report.samples += 1
            raised_after += [Raised(i, event, a, s) for a, s in candidate.observe(event)]
            if isinstance(baseline, Shadow):
                raised_before += [Raised(i, event, a, s) for a, s in baseline.observe(event)]
            continue
        recorded = baseline.get(i) if isinstance(baseline, Mapping) else None
        failing = recorded.failed if recorded is not None else frozenset()
        after = candidate.feed(event, failing)
        before = recorded if isinstance(baseline, Mapping) else baseline.feed(event)
        if after is None or before is None or not isinstance(event, AlertEvent):
            continue
        report.alerts += 1
        diffs = compare(before, after)
        if diffs:
            labels = event.alert.labels
            found.append((i, AlertDiff(event.ref, event.at, labels.get("alertname", ""),
                                       dict(labels), diffs)))
    found += differences(raised_before, raised_after)
    report.changed = [diff for _, diff in sorted(found, key=lambda f: f[0])]
    return report
