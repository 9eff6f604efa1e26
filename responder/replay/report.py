"""What a replay found: per alert (or internal alert raised by a sample), the ways its
handling would change, rendered as text or JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from responder.engine.policy import parse_time
from responder.replay.events import Action, Observed

What = Literal["new", "missing", "level", "matched", "raised", "when"]
KINDS: tuple[What, ...] = ("new", "missing", "level", "matched", "raised", "when")


@dataclass(frozen=True)
class Difference:
    """One way an alert's handling would change.

    For an internal alert of a metric rule, ``raised`` says that only one table raised it
    (``before`` or ``after`` holds its status) and ``when`` that both did at different
    samples (``before``: the baseline's time and sample, ``after``: the candidate's time).
    """

    what: What
    control: str = ""
    key: str = ""
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    status: str = ""

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
        if self.what == "raised":
            side = "baseline" if self.before else "candidate"
            return f"raised   {self.status} only under the {side}{rules}"
        if self.what == "when":
            at, ref = self.before
            return (f"when     {self.status} {_shift(at, self.after[0])}: at {self.after[0]}"
                    f" instead of {at} ({ref}){rules}")
        return ("matched  " + " ".join([f"-{r}" for r in self.before]
                                       + [f"+{r}" for r in self.after]))


@dataclass
class AlertDiff:
    """The differences for one alert; for an internal alert, ``sample`` names the series
    and value of the sample that raised it (at ``ref``, ``at``)."""

    ref: str
    at: str
    alertname: str
    labels: dict[str, str]
    differences: list[Difference]
    status: str = ""
    sample: str = ""

    def header(self) -> str:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items())
                           if k != "alertname")
        raised = f"  {self.status}, from {self.sample}" if self.sample else ""
        return f"{self.ref}  {self.at}  {self.alertname} {{{labels}}}{raised}"


@dataclass
class Report:
    alerts: int = 0
    samples: int = 0
    changed: list[AlertDiff] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(KINDS, 0)
        for a in self.changed:
            for d in a.differences:
                counts[d.what] += 1
        return counts

    def lines(self) -> list[str]:
        out = []
        for a in self.changed:
            out.append(a.header())
            out += [f"  {d.line()}" for d in a.differences]
        out += [f"note: {n}" for n in self.notes]
        c = self.counts()
        replayed = f"{self.alerts} alerts" + (
            f" and {self.samples} samples" if self.samples else "")
        metric = f", {c['raised']} raised, {c['when']} when" if self.samples else ""
        out.append(f"{replayed} replayed, {len(self.changed)} with differences:"
                   f" {c['new']} new, {c['missing']} missing, {c['level']} level,"
                   f" {c['matched']} matched{metric}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"alerts": self.alerts, "samples": self.samples, "counts": self.counts(),
                "changed": [asdict(a) for a in self.changed], "notes": list(self.notes)}


def _shift(before: str, after: str) -> str:
    was, now = parse_time(before), parse_time(after)
    if was is None or now is None:
        return "at another time"
    delta_s = (now - was).total_seconds()
    return f"{abs(delta_s):g}s {'later' if delta_s > 0 else 'earlier'}"


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
