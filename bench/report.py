"""The bench's report: the table, the side-by-side ratios, footprint and profile sections."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import statistics
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import footprint as db_footprint
from bench import profile as spy
from bench.levels import QUIET_S, QUIET_SHARE, SYSTEMS, Level, percentile
from bench.targets import check, ratio_table

ROOT = Path(__file__).resolve().parent.parent


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


@dataclass(frozen=True)
class Row:
    """One system at one concurrency: the median of each figure over the rounds."""

    system: str
    concurrency: int
    rounds: int
    alerts_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    peak_rss_mib: float | None
    arrived: int
    sent: int
    calls_per_s: float
    cpu_ms_per_alert: float | None
    machine_ms_per_alert: float | None
    postgres_ms_per_alert: float | None
    driver_ms_per_alert: float | None
    quiet_s: float
    host_probe: str


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _probes(group: list[Level]) -> str:
    """Each round's host probes, before/after, in ms: a slow host shows in them."""
    return ", ".join(f"{lv.host_probe_ms[0]:.0f}/{lv.host_probe_ms[1]:.0f}" for lv in group
                     if lv.host_probe_ms is not None) or "n/a"


def rows(levels: list[Level]) -> list[Row]:
    groups: dict[tuple[str, int], list[Level]] = {}
    for lv in levels:
        groups.setdefault((lv.system, lv.concurrency), []).append(lv)
    out = []
    for (system, c), group in sorted(groups.items(),
                                     key=lambda kv: (kv[0][1], SYSTEMS.index(kv[0][0]))):
        out.append(Row(
            system, c, len(group), statistics.median(lv.alerts_per_s for lv in group),
            _median([percentile(lv.latencies_ms, 50) for lv in group]),
            _median([percentile(lv.latencies_ms, 99) for lv in group]),
            _median([lv.peak_rss_mib for lv in group]),
            sum(lv.arrived for lv in group), sum(len(lv.sent.sent_ns) for lv in group),
            statistics.median(lv.calls_per_s for lv in group),
            _median([lv.cpu_ms_per_alert for lv in group]),
            _median([lv.machine_ms_per_alert for lv in group]),
            _median([lv.postgres_ms_per_alert for lv in group]),
            _median([lv.driver_ms_per_alert for lv in group]),
            statistics.median(lv.quiet_s for lv in group), _probes(group)))
    return out


def table(levels: list[Level]) -> str:
    lines = ["| system | concurrency | alerts/s | p50 ms | p99 ms | peak RSS MiB"
             " | calls arrived/sent | admin calls/s | server CPU ms/alert"
             " | PostgreSQL CPU ms/alert | driver CPU ms/alert | machine CPU ms/alert"
             " | quiet after s | host probe ms |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows(levels):
        rss = "n/a" if r.peak_rss_mib is None else f"{r.peak_rss_mib:.0f}"
        lines.append(f"| {r.system} | {r.concurrency} | {r.alerts_per_s:.0f}"
                     f" | {_ms(r.p50_ms)} | {_ms(r.p99_ms)} | {rss}"
                     f" | {r.arrived}/{r.sent} | {r.calls_per_s:.0f}"
                     f" | {_ms(r.cpu_ms_per_alert)} | {_ms(r.postgres_ms_per_alert)}"
                     f" | {_ms(r.driver_ms_per_alert)} | {_ms(r.machine_ms_per_alert)}"
                     f" | {r.quiet_s:.1f} | {r.host_probe} |")
    return "\n".join(lines)


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])
    return "n/a"


def footprint_section(levels: list[Level]) -> list[str]:
    counted = [lv for lv in levels if lv.footprint is not None]
    if not counted:
        return []
    out = ["", "## Database footprint per alert (--footprint)", "",
           "Counted from PostgreSQL between a snapshot after the warm-up (taken after"
           f" {db_footprint.SETTLE_S:.0f} s of quiet, so the counters are flushed) and one after"
           " the measured alerts (commit counters read after the server stopped):"
           " `pg_stat_database` deltas, exact `count(*)` and `pg_total_relation_size` of"
           " every table.", ""]
    for lv in counted:
        assert lv.footprint is not None
        out += db_footprint.render(lv.system, lv.concurrency, lv.footprint)
    return out


def profile_section(levels: list[Level]) -> list[str]:
    out = []
    for lv in levels:
        if lv.profile is None:
            continue
        out += ["", f"## Profile: {lv.system} at concurrency {lv.concurrency} (--profile)", "",
                f"A level of its own, not in the tables above: {len(lv.sent.acked)} alerts,"
                f" {lv.alerts_per_s:.0f} alerts/s answered, p50"
                f" {_ms(percentile(lv.latencies_ms, 50))} ms while sampled. py-spy samples"
                " on-CPU Python stacks of the server process only (not PostgreSQL):", "",
                f"`{spy.shown(lv.profile_command, ROOT)}`", "", *spy.render(lv.profile)]
    return out


def report(levels: list[Level], args: argparse.Namespace, pg_version: str) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
                if line.startswith("model name")), platform.machine())
    command = shlex.join([os.path.relpath(sys.executable, ROOT), *sys.argv])
    parts = [
        "# Benchmark results",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"- machine: nproc {os.cpu_count()}, {cpu}, Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}, PostgreSQL {pg_version}",
        f"- command: `{command}`",
        f"- per level: {args.n} webhooks of one alert each, after {args.warmup} warm-up;"
        " fresh database and server process per level; "
        + (f"{args.rounds} rounds, systems interleaved; every figure is the median over the"
           " rounds (calls arrived/sent: the sum)" if args.rounds > 1 else "one round"),
        f"- load average (1, 5, 15 min) at the end: {load_average()}; the machine is shared,"
        " so every figure here is provisional",
        "",
        table([lv for lv in levels if lv.profile is None]),
        "",
        "alerts/s: webhooks answered 2xx per second of the send phase. p50/p99: send to"
        " admin-call arrival. admin calls/s: calls arrived per second from the first send"
        " to the last arrival. Peak RSS: VmHWM of the server process only (for responder,"
        " the daemon, not PostgreSQL). Server CPU ms/alert: the server process's user and"
        " system CPU from the first measured send until it has gone quiet after the last"
        f" call arrived (under {QUIET_SHARE:.0%} of a core for {QUIET_S:.0f} s: its"
        " read-backs, outcomes and evidence, however late, are part of each alert's cost),"
        " per webhook answered (PostgreSQL's own CPU is not in it). PostgreSQL CPU"
        " ms/alert: the same span for every local process named postgres (the cluster's"
        " backends, ended ones included, and its background processes). Driver CPU"
        " ms/alert: this bench process (the senders and the admin-call receiver). Quiet"
        " after: from the last call to that quiet, the last second included. Machine CPU"
        " ms/alert: the same over every process and core (server, PostgreSQL, this driver"
        " and its admin-call receiver, the kernel's network work, anything else running), so"
        f" {os.cpu_count()} cores / machine CPU per alert bounds what any concurrency can"
        " reach. Host probe ms: the CPU time of a fixed pure-Python loop in this process"
        " (bench/cpu.py), just before the level's measured webhooks and just after its"
        " quiet, one pair per round. The machine is shared and its cores slow down for"
        " everyone at times (the same loop has taken from 200 to 420 ms of a 3-million"
        " count within minutes): every CPU figure of a level run beside a high probe rises"
        " with it, so compare levels whose probes agree.",
    ]
    measured = rows([lv for lv in levels if lv.profile is None])
    parts += ["", "## Side by side", "",
              "contained/s: admin calls arrived per second (the admin calls/s column);"
              " p50: send to call.", "", *ratio_table(measured)]
    if met := check(measured):
        parts += ["", "## Targets (issue 15)", "", *met]
    parts += footprint_section(levels) + profile_section(levels)
    noted = [lv for lv in levels if lv.notes]
    if noted:
        parts += ["", "## Notes"]
        for lv in noted:
            parts += ["", f"{lv.system} at concurrency {lv.concurrency}:", "", "```",
                      *lv.notes, "```"]
    return "\n".join(parts) + "\n"
