"""The speed targets of issue 15, checked against one run's medians.

- machine CPU per contained alert at concurrency 8: at most 2.0 ms;
- responder's throughput at concurrency 8 and 32: at least 0.6 times the floor's;
- responder's call p50 at concurrency 1: at most 2 times the floor's;
- against the DBOS peer at every concurrency: at least 3 times its throughput and under half
  its p50.

Throughput is contained alerts per second (admin calls arrived per second of the level), not
answers per second: responder and the peer answer before their call, the floor after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

CPU_MS_AT_8 = 2.0
FLOOR_THROUGHPUT = 0.6
FLOOR_P50_AT_1 = 2.0
PEER_THROUGHPUT = 3.0
PEER_P50 = 0.5


class Figures(Protocol):
    @property
    def system(self) -> str: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def calls_per_s(self) -> float: ...
    @property
    def p50_ms(self) -> float | None: ...
    @property
    def machine_ms_per_alert(self) -> float | None: ...


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def ratio_table(rows: Iterable[Figures]) -> list[str]:
    """Per concurrency: each system's contained/s and p50, side by side, and the ratios."""
    by = {(r.system, r.concurrency): r for r in rows}
    levels = sorted({c for _, c in by})
    out = ["| concurrency | floor contained/s, p50 ms | DBOS peer | responder"
           " | responder/floor contained/s | responder/floor p50"
           " | responder/DBOS contained/s | responder/DBOS p50"
           " | machine CPU ms/alert floor / DBOS / responder |",
           "|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]

    def cell(r: Figures | None) -> str:
        if r is None:
            return "-"
        p50 = "n/a" if r.p50_ms is None else f"{r.p50_ms:.1f}"
        return f"{r.calls_per_s:.0f}/s, {p50}"

    def div(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a is not None and b else "-"

    def rate(r: Figures | None) -> float | None:
        return None if r is None else r.calls_per_s

    def p50(r: Figures | None) -> float | None:
        return None if r is None else r.p50_ms

    def cpu(r: Figures | None) -> str:
        return "-" if r is None or r.machine_ms_per_alert is None \
            else f"{r.machine_ms_per_alert:.1f}"

    for c in levels:
        f, d, r = by.get(("floor", c)), by.get(("dbos", c)), by.get(("responder", c))
        out.append(
            f"| {c} | {cell(f)} | {cell(d)} | {cell(r)}"
            f" | {div(rate(r), rate(f))} | {div(p50(r), p50(f))}"
            f" | {div(rate(r), rate(d))} | {div(p50(r), p50(d))}"
            f" | {cpu(f)} / {cpu(d)} / {cpu(r)} |")
    return out


def check(rows: Iterable[Figures]) -> list[str]:
    """One line per target that this run measured, marked met or MISSED."""
    by = {(r.system, r.concurrency): r for r in rows}
    out = []
    if (r8 := by.get(("responder", 8))) and r8.machine_ms_per_alert is not None:
        out.append(f"- machine CPU per contained alert at concurrency 8 <= {CPU_MS_AT_8} ms:"
                   f" {r8.machine_ms_per_alert:.1f} ms: "
                   f"{_mark(r8.machine_ms_per_alert <= CPU_MS_AT_8)}")
    for c in (8, 32):
        r, f = by.get(("responder", c)), by.get(("floor", c))
        if r and f and f.calls_per_s:
            x = r.calls_per_s / f.calls_per_s
            out.append(f"- contained/s at concurrency {c} >= {FLOOR_THROUGHPUT}x floor:"
                       f" {r.calls_per_s:.0f} vs {f.calls_per_s:.0f} ({x:.2f}x):"
                       f" {_mark(x >= FLOOR_THROUGHPUT)}")
    r1, f1 = by.get(("responder", 1)), by.get(("floor", 1))
    if r1 and f1 and r1.p50_ms is not None and f1.p50_ms:
        x = r1.p50_ms / f1.p50_ms
        out.append(f"- call p50 at concurrency 1 <= {FLOOR_P50_AT_1}x floor:"
                   f" {r1.p50_ms:.1f} vs {f1.p50_ms:.1f} ms ({x:.2f}x):"
                   f" {_mark(x <= FLOOR_P50_AT_1)}")
    for c in sorted({c for _, c in by}):
        r, d = by.get(("responder", c)), by.get(("dbos", c))
        if not (r and d and d.calls_per_s):
            continue
        x = r.calls_per_s / d.calls_per_s
        out.append(f"- contained/s at concurrency {c} >= {PEER_THROUGHPUT:.0f}x DBOS peer:"
                   f" {r.calls_per_s:.0f} vs {d.calls_per_s:.0f} ({x:.2f}x):"
                   f" {_mark(x >= PEER_THROUGHPUT)}")
        if r.p50_ms is not None and d.p50_ms:
            y = r.p50_ms / d.p50_ms
            out.append(f"- call p50 at concurrency {c} < {PEER_P50}x DBOS peer:"
                       f" {r.p50_ms:.1f} vs {d.p50_ms:.1f} ms ({y:.2f}x):"
                       f" {_mark(y < PEER_P50)}")
    return out
