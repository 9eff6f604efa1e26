"""What one measured level found: the send phase and the figures drawn from it."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from bench import footprint as db_footprint
from bench import profile as spy

SYSTEMS = ("floor", "dbos", "responder")
QUIET_S = 1.0
"""A server is quiet once it has used under QUIET_SHARE of a core for this long."""
QUIET_SHARE = 0.03
QUIET_CAP_S = 90.0
"""How long to wait for quiet at most, in case a server never goes quiet."""


@dataclass
class Sent:
    """What one send phase did."""

    sent_ns: dict[str, int] = field(default_factory=dict)
    acked: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    started_ns: int = 0
    wall_s: float = 0.0
    timed_out: bool = False



@dataclass
class Level:
    system: str
    concurrency: int
    sent: Sent
    latencies_ms: list[float]
    arrived: int
    calls_per_s: float
    peak_rss_mib: float | None
    notes: list[str]
    cpu_ms_per_alert: float | None = None
    machine_ms_per_alert: float | None = None
    postgres_ms_per_alert: float | None = None
    driver_ms_per_alert: float | None = None
    footprint: db_footprint.Footprint | None = None
    profile: spy.Profile | None = None
    profile_command: list[str] = field(default_factory=list)
    quiet_s: float = 0.0
    """From the last call arriving to the server going quiet."""
    host_probe_ms: tuple[float, float] | None = None
    """bench/cpu.py's probe just before the measured webhooks and just after the quiet."""

    @property
    def alerts_per_s(self) -> float:
        return len(self.sent.acked) / self.sent.wall_s if self.sent.wall_s else 0.0


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not values:
        return None
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]
