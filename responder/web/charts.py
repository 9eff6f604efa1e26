"""The rule's evidence queries as small charts, drawn on the server: the numbers become
SVG coordinates here, and the template writes them (labels escaped) as inline SVG."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

WIDTH, HEIGHT, PAD = 320, 56, 4
MAX_SERIES = 8


@dataclass(frozen=True)
class Series:
    label: str
    last: float
    low: float
    high: float
    points: str = ""  # polyline "x,y x,y", for a range (matrix) answer
    bar_px: float = 0.0  # bar length, for an instant (vector, scalar) answer


@dataclass(frozen=True)
class Chart:
    name: str
    query: str
    kind: str  # "lines", "bars" or "none"
    series: list[Series] = field(default_factory=list)
    note: str = ""
    width: int = WIDTH
    height: int = HEIGHT


def _label(metric: Any) -> str:
    if not isinstance(metric, dict) or not metric:
        return "value"
    name = str(metric.get("__name__", ""))
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest else name or "value"


def _number(sample: Any) -> float | None:
    try:
        value = float(sample[1])
    except (TypeError, ValueError, IndexError):
        return None
    return value if math.isfinite(value) else None


def _lines(result: list[Any]) -> list[Series]:
    out = []
    for item in result[:MAX_SERIES]:
        pairs = [(float(s[0]), v) for s in item.get("values") or []
                 if (v := _number(s)) is not None]
        if not pairs:
            continue
        t0, t1 = pairs[0][0], pairs[-1][0]
        low, high = min(v for _, v in pairs), max(v for _, v in pairs)
        # Halved first: the span of two finite floats can overflow to infinity (then NaN).
        span_t, span_v = (t1 / 2 - t0 / 2) or 1.0, (high / 2 - low / 2) or 1.0
        points = " ".join(
            f"{PAD + (t / 2 - t0 / 2) / span_t * (WIDTH - 2 * PAD):.1f},"
            f"{HEIGHT - PAD - (v / 2 - low / 2) / span_v * (HEIGHT - 2 * PAD):.1f}"
            for t, v in pairs)
        out.append(Series(_label(item.get("metric")), pairs[-1][1], low, high, points=points))
    return out


def _bars(values: list[tuple[str, float]]) -> list[Series]:
    top = max((abs(v) for _, v in values), default=0.0) or 1.0
    return [Series(label, v, v, v, bar_px=abs(v) / top * (WIDTH - 2 * PAD))
            for label, v in values[:MAX_SERIES]]


def chart(snapshot: dict[str, Any]) -> Chart | None:
    """The chart for one Prometheus snapshot; None for a target (HTTP) snapshot."""
    if snapshot.get("kind") != "prometheus":
        return None
    name = str(snapshot.get("name", ""))
    try:
        stored = json.loads(snapshot.get("result") or "{}")
        query = str(stored.get("query", ""))
        if "error" in stored:
            return Chart(name, query, "none", note=f"not captured: {stored['error']}")
        answer = json.loads(stored.get("answer") or "{}")
        data = answer.get("data") or {}
        kind, result = data.get("resultType"), data.get("result")
    except (ValueError, AttributeError, TypeError):
        return Chart(name, "", "none", note="the stored answer could not be read")
    if answer.get("status") != "success":
        return Chart(name, query, "none", note=f"Prometheus refused the query:"
                     f" {answer.get('error', 'no answer')}")
    if kind == "matrix" and isinstance(result, list):
        series = _lines([r for r in result if isinstance(r, dict)])
        return Chart(name, query, "lines" if series else "none", series,
                     "" if series else "no samples in the range")
    if kind == "vector" and isinstance(result, list):
        values = [(_label(r.get("metric")), v) for r in result if isinstance(r, dict)
                  if (v := _number(r.get("value"))) is not None]
        return Chart(name, query, "bars" if values else "none", _bars(values),
                     "" if values else "no series matched when the incident opened")
    if kind == "scalar" and (v := _number(result)) is not None:
        return Chart(name, query, "bars", _bars([("scalar", v)]))
    return Chart(name, query, "none", note=f"answer of type {kind} is not drawn")


def charts(snapshots: list[dict[str, Any]]) -> list[Chart]:
    return [c for s in snapshots if (c := chart(s)) is not None]
