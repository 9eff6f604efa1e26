"""Compare the internal alerts two tables raise over the same samples.

Each table runs its own threshold evaluator, so the tables may raise an alert at different
samples, or only one of them may raise it. An alert is one series under one rule (its
fingerprint); its *episodes* run from a firing to the resolve (or the end of the input).
Episodes of the two tables that overlap in time are the same episode, raised at different
moments (``when``) or asking for different actions; an episode with no counterpart was
raised under one table only (``raised``), and its actions are new or missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from responder.model import Alert
from responder.replay.events import Observed, SampleEvent
from responder.replay.report import AlertDiff, Difference, compare


@dataclass(frozen=True)
class Raised:
    """An internal alert a table raised at a sample (``position`` in the events)."""

    position: int
    event: SampleEvent
    alert: Alert
    seen: Observed


@dataclass
class Episode:
    firing: Raised
    resolved: Raised | None = None

    @property
    def end(self) -> float:
        return self.resolved.position if self.resolved is not None else math.inf

    def overlaps(self, other: Episode) -> bool:
        return self.firing.position < other.end and other.firing.position < self.end


def episodes(raised: Sequence[Raised]) -> dict[str, list[Episode]]:
    """Per fingerprint, the episodes in order."""
    out: dict[str, list[Episode]] = {}
    for r in raised:
        series = out.setdefault(r.alert.fingerprint, [])
        if r.alert.status == "firing":
            series.append(Episode(r))
        elif series and series[-1].resolved is None:
            series[-1].resolved = r
    return out


def pairs(before: Sequence[Episode],
          after: Sequence[Episode]) -> Iterator[tuple[Episode | None, Episode | None]]:
    """Overlapping episodes paired in order; the others alone."""
    i = j = 0
    while i < len(before) or j < len(after):
        b = before[i] if i < len(before) else None
        a = after[j] if j < len(after) else None
        if b is not None and a is not None and b.overlaps(a):
            yield b, a
            i, j = i + 1, j + 1
        elif a is None or (b is not None and b.firing.position < a.firing.position):
            yield b, None
            i += 1
        else:
            yield None, a
            j += 1


def differences(before: Sequence[Raised],
                after: Sequence[Raised]) -> list[tuple[int, AlertDiff]]:
    """(position, differences) for every internal alert raised differently."""
    was, now = episodes(before), episodes(after)
    out: list[tuple[int, AlertDiff]] = []
    for fingerprint in sorted(was.keys() | now.keys()):
        for b, a in pairs(was.get(fingerprint, []), now.get(fingerprint, [])):
            out += _episode(b, a)
    return out


def _episode(b: Episode | None, a: Episode | None) -> list[tuple[int, AlertDiff]]:
    if b is None or a is None:
        alone = b or a
        assert alone is not None
        return [_alone(alone.firing, under_baseline=b is not None)]
    out = [_both(b.firing, a.firing)]
    if b.resolved is not None and a.resolved is not None:
        out.append(_both(b.resolved, a.resolved))
    elif b.resolved is not None:
        out.append(_alone(b.resolved, under_baseline=True))
    elif a.resolved is not None:
        out.append(_alone(a.resolved, under_baseline=False))
    return [d for d in out if d[1].differences]


def _alone(r: Raised, *, under_baseline: bool) -> tuple[int, AlertDiff]:
    status = (r.alert.status,)
    raised = Difference("raised", before=status if under_baseline else (),
                        after=() if under_baseline else status, rules=_rules(r),
                        status=r.alert.status)
    seen = (r.seen, Observed()) if under_baseline else (Observed(), r.seen)
    return r.position, _diff(r, [raised, *_actions(*seen)])


def _both(b: Raised, a: Raised) -> tuple[int, AlertDiff]:
    diffs = _actions(b.seen, a.seen)
    if b.position != a.position:
        diffs.insert(0, Difference("when", before=(b.event.at, b.event.ref),
                                   after=(a.event.at,), rules=_rules(a),
                                   status=a.alert.status))
    return a.position, _diff(a, diffs)


def _actions(before: Observed, after: Observed) -> list[Difference]:
    # An internal alert always matches the rule that raised it: only actions can differ.
    return [d for d in compare(before, after) if d.what != "matched"]


def _rules(r: Raised) -> tuple[str, ...]:
    rule = r.alert.annotations.get("rule", "")
    return (rule,) if rule else ()


def _diff(r: Raised, diffs: list[Difference]) -> AlertDiff:
    if r.alert.annotations.get("resolved_by") == "stale":
        # Resolved because its series fell silent: the sample at hand only moved time on.
        metric = r.alert.annotations.get("summary", "").partition(":")[0]
        series = {k: v for k, v in r.alert.labels.items() if k != "alertname"}
        sample = f"{_series(metric, series)} gone stale (last sample {r.alert.ends_at})"
    else:
        name, labels, value, _ = r.event.sample
        sample = f"{_series(name, labels)} = {value:g}"
    return AlertDiff(r.event.ref, r.event.at, r.alert.labels.get("alertname", ""),
                     dict(r.alert.labels), diffs, r.alert.status, sample)


def _series(name: str, labels: Mapping[str, str]) -> str:
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{selector}}}" if selector else name
