"""Compare what was done (or what a baseline table asks) with what a candidate table asks,
alert by alert, and render the differences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from responder.replay.events import Action, AlertEvent, Event, Observed
from responder.replay.shadow import Shadow

What = Literal["new", "missing", "level", "matched"]


@dataclass(frozen=True)
class Difference:
    """One way an alert's handling would change."""

    what: What
    control: str = ""
    key: str = ""
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()

    def line(self) -> str:
        target = f"{self.control}[{self.key or '-'}]"
        rules = f"  ({', '.join(self.rules)})" if self.rules else ""
        if self.what == "new":
            return f"new      {target} -> {', '.join(self.after)}{rules}"
        if self.what == "missing":
            return f"missing  {target} -> {', '.join(self.before)}{rules}"
        if self.what == "level":
            return (f"level    {target}: {', '.join(self.before)} -> "
                    f"{', '.join(self.after)}{rules}")
        return ("matched  " + " ".join([f"-{r}" for r in self.before]
                                       + [f"+{r}" for r in self.after]))


@dataclass
class AlertDiff:
    ref: str
    at: str
    alertname: str
    labels: dict[str, str]
    differences: list[Difference]


@dataclass
class Report:
    alerts: int = 0
    changed: list[AlertDiff] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("new", "missing", "level", "matched"), 0)
        for a in self.changed:
            for d in a.differences:
                counts[d.what] += 1
        return counts

    def lines(self) -> list[str]:
        out = []
        for a in self.changed:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items())
                               if k != "alertname")
            out.append(f"{a.ref}  {a.at}  {a.alertname} {{{labels}}}")
            out += [f"  {d.line()}" for d in a.differences]
        c = self.counts()
        out.append(f"{self.alerts} alerts replayed, {len(self.changed)} with differences:"
                   f" {c['new']} new, {c['missing']} missing, {c['level']} level,"
                   f" {c['matched']} matched")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"alerts": self.alerts, "counts": self.counts(),
                "changed": [asdict(a) for a in self.changed]}


def compare(before: Observed, after: Observed) -> list[Difference]:
    """The differences between two observations of one alert, in a stable order."""
    diffs: list[Difference] = []
    if before.matched != after.matched:
        diffs.append(Difference("matched", before=tuple(sorted(before.matched - after.matched)),
                                after=tuple(sorted(after.matched - before.matched))))
    keys = sorted({(a.control, a.key) for a in (*before.asked, *after.asked)})
    for control, key in keys:
        was = _levels(before.asked, control, key)
        now = _levels(after.asked, control, key)
        gone, added = sorted(set(was) - set(now)), sorted(set(now) - set(was))
        rules = tuple(sorted({was.get(level, "") for level in gone}
                             | {now.get(level, "") for level in added} - {""}))
        if gone and added:
            diffs.append(Difference("level", control, key, tuple(gone), tuple(added), rules))
        elif added:
            diffs.append(Difference("new", control, key, after=tuple(added), rules=rules))
        elif gone:
            diffs.append(Difference("missing", control, key, before=tuple(gone), rules=rules))
    return diffs


def _levels(asked: Mapping[Action, str], control: str, key: str) -> dict[str, str]:
    return {a.level: rule for a, rule in asked.items() if a.control == control and a.key == key}


def replay(events: Sequence[Event], candidate: Shadow,
           baseline: Shadow | Mapping[int, Observed]) -> Report:
    """Feed every event to the candidate (and a baseline table, if given) and compare."""
    report = Report()
    for i, event in enumerate(events):
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
            report.changed.append(AlertDiff(event.ref, event.at, labels.get("alertname", ""),
                                            dict(labels), diffs))
    return report
