"""Whether automation may act right now: the global mode, break-glass, per-rule dry-run, and
the age past which an alert is recorded but not acted on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from responder.engine.storm import StormGuard
from responder.model import Alert
from responder.rules.table import Rule

GlobalMode = Literal["enforce", "dry_run", "paused"]
Effect = Literal["enforce", "dry_run", "paused", "stale"]
GLOBAL_MODES: tuple[GlobalMode, ...] = ("enforce", "dry_run", "paused")

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(raw: str) -> datetime | None:
    """An RFC 3339 time (nanoseconds cut to microseconds), or None if it is not one."""
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True)
class Policy:
    """A snapshot of what automation may do, taken when a batch of alerts is planned."""

    global_mode: GlobalMode = "enforce"
    break_glass_until: datetime | None = None
    max_alert_age_s: float | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    guard: StormGuard | None = None

    @property
    def break_glass(self) -> bool:
        return self.break_glass_until is not None and self.break_glass_until > self.now

    @property
    def automatic(self) -> GlobalMode:
        """What automatic calls may do now, a rule's step or drift repair: only "enforce"
        calls; break-glass counts as paused (a person has the controls)."""
        return "paused" if self.break_glass else self.global_mode

    def effect(self, rule: Rule, alert: Alert) -> Effect:
        """What a matching firing alert may do under this policy."""
        if self.break_glass or self.global_mode == "paused":
            return "paused"
        if self.max_alert_age_s is not None:
            started = parse_time(alert.starts_at)
            if started is not None and (self.now - started).total_seconds() > (
                    self.max_alert_age_s):
                return "stale"
        if self.global_mode == "dry_run" or rule.mode == "dry_run":
            return "dry_run"
        return "enforce"
