"""What a replay feeds through a rule table, in order, and what each alert asked for.

The input is a sequence of events: alerts, incident closures (a release closes incidents,
so the next alert contains again) and metric samples, which each table evaluates with its
own threshold state; the internal alerts a sample raises are then planned like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from responder.engine.thresholds import Sample
from responder.model import Alert


@dataclass(frozen=True, order=True)
class Action:
    """One containment call: a control key raised to a level."""

    control: str
    key: str
    level: str

    def __str__(self) -> str:
        return f"{self.control}[{self.key or '-'}] -> {self.level}"


@dataclass(frozen=True)
class AlertEvent:
    """An alert as it arrived; ``ref`` says where it came from (inbox id, file:line)."""

    alert: Alert
    ref: str
    at: str


@dataclass(frozen=True)
class CloseEvent:
    """An incident closed by a person (a release): its next alert opens a new one."""

    rule_id: str
    scope: str


@dataclass(frozen=True)
class SampleEvent:
    """A metric sample as it arrived; ``ref`` says where (file:line), ``at`` is its time."""

    sample: Sample
    ref: str
    at: str


Event = AlertEvent | CloseEvent | SampleEvent


@dataclass
class Observed:
    """What one alert led to: the rules it matched and the actions they asked for."""

    matched: set[str] = field(default_factory=set)
    asked: dict[Action, str] = field(default_factory=dict)
    """Each action, with the rule that asked for it."""
    failed: set[Action] = field(default_factory=set)
    """Calls that failed at the time (store only): replayed as failing, so escalations run."""
