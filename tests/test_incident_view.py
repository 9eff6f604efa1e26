"""The incident page's pieces on their own: charts from any stored answer, links only to
http(s), reasons in words, and the banner for each automation state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from responder.web.action_groups import group
from responder.web.banner import automation
from responder.web.charts import HEIGHT, WIDTH, chart
from responder.web.incident_view import safe_url
from responder.web.reasons import explain

JSON = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


def snapshot(answer: object) -> dict[str, Any]:
    return {"name": "q", "kind": "prometheus", "ok": True,
            "result": json.dumps({"query": "up", "answer": json.dumps(answer)})}


@given(JSON)
def test_any_stored_answer_draws_or_says_why(answer: object) -> None:
    """Whatever Prometheus (or a corrupted row) answered, the chart is drawn inside its box
    or carries a note; it never raises."""
    c = chart(snapshot(answer))
    assert c is not None
    assert c.kind in ("lines", "bars", "none")
    if c.kind == "none":
        assert c.note
    for s in c.series:
        for point in s.points.split():
            x, y = (float(v) for v in point.split(","))
            assert 0 <= x <= WIDTH and 0 <= y <= HEIGHT
        assert 0 <= s.bar_px <= WIDTH


@given(st.lists(st.tuples(st.floats(0, 2e9), st.floats(allow_nan=True, allow_infinity=True)),
                min_size=1, max_size=30))
@example([(0.0, -1.7e308), (1.0, 1.7e308)])  # finite values whose span overflows to inf
def test_range_answers_become_lines_in_the_box(samples: list[tuple[float, float]]) -> None:
    """A matrix answer with any timestamps and values (NaN and Inf dropped) stays in the box."""
    answer = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "m", "job": "x"},
         "values": [[t, str(v)] for t, v in sorted(samples)]}]}}
    c = chart(snapshot(answer))
    assert c is not None
    for s in c.series:
        assert s.label == 'm{job="x"}'
        for point in s.points.split():
            x, y = (float(v) for v in point.split(","))
            assert 0 <= x <= WIDTH and 0 <= y <= HEIGHT


def test_vector_answer_is_bars_with_values() -> None:
    """An instant answer is one bar per series, with its value."""
    answer = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"__name__": "a"}, "value": [1, "2"]},
        {"metric": {"__name__": "b"}, "value": [1, "4"]}]}}
    c = chart(snapshot(answer))
    assert c is not None and c.kind == "bars"
    assert [(s.label, s.last) for s in c.series] == [("a", 2.0), ("b", 4.0)]
    assert c.series[1].bar_px > c.series[0].bar_px


def test_failed_snapshot_says_so() -> None:
    """A query that could not be run is shown with its error, not as an empty chart."""
    c = chart({"name": "q", "kind": "prometheus", "ok": False,
               "result": json.dumps({"error": "RESPONDER_PROMETHEUS_URL is not set",
                                     "query": "up"})})
    assert c is not None and c.kind == "none" and "PROMETHEUS_URL" in c.note


@given(st.text(max_size=40))
def test_only_http_addresses_become_links(value: str) -> None:
    """An annotation becomes a link only if it is an http(s) address: javascript:, data:
    and the like stay text."""
    link = safe_url(value)
    if link is not None:
        assert link.lower().startswith(("http://", "https://"))
    assert safe_url("javascript:alert(1)") is None
    assert safe_url(" JaVaScRiPt:alert(1)") is None
    assert safe_url("data:text/html,x") is None


def test_reasons_in_words() -> None:
    """A failed call says which control, how many attempts and how long; an escalation
    says what was set instead."""
    t0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    records: list[dict[str, Any]] = [
        {"seq": 1, "kind": "intent", "step_id": 7, "at": t0.isoformat(),
         "control": "withdrawals", "key": "", "detail": {"level": "HALTED"}},
        {"seq": 2, "kind": "outcome", "step_id": 7, "control": "withdrawals", "key": "",
         "at": (t0 + timedelta(seconds=30)).isoformat(),
         "detail": {"status": "failed", "level": "HALTED", "error": "503 from exchange",
                    "call": {"attempts": [{}] * 7}}},
        {"seq": 3, "kind": "key_rejected", "control": "symbol-mode",
         "detail": {"label": "symbol", "value": "'eth/usd'"}},
    ]
    steps = [{"kind": "escalation", "control": "global-mode", "key": "", "level": "SOFT_HALT"}]
    texts = [r.text for r in explain(records, steps)]
    assert texts[0] == ("withdrawals (whole exchange) → HALTED: the call failed 7 times in"
                        " 30 s: 503 from exchange")
    assert texts[1] == ("symbol label `eth/usd` failed the key pattern of symbol-mode: set"
                        " global-mode (whole exchange) to SOFT_HALT instead")


class _Row:
    def __init__(self, **values: object) -> None:
        self.values = values

    async def fetchrow(self, _sql: str) -> dict[str, object]:
        return self.values


async def test_banner_for_each_state() -> None:
    """The banner names enforce, dry-run, paused, and break-glass with its time left."""
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    base = {"break_glass_until": None, "break_glass_by": None, "break_glass_reason": None}
    for mode, word in (("enforce", "enforce"), ("dry_run", "DRY-RUN"), ("paused", "PAUSED")):
        banner = await automation(_Row(global_mode=mode, **base), now)  # type: ignore[arg-type]
        assert word in banner.headline
    glass = await automation(_Row(global_mode="enforce", break_glass_until=now + timedelta(
        minutes=42), break_glass_by="ada", break_glass_reason="exchange maintenance"),  # type: ignore[arg-type]
        now)
    assert glass.state == "break_glass"
    assert "42 min left" in glass.headline
    assert "ada" in glass.detail and "exchange maintenance" in glass.detail
    expired = await automation(_Row(global_mode="enforce", break_glass_until=now - timedelta(
        minutes=1), break_glass_by="ada", break_glass_reason="over"), now)  # type: ignore[arg-type]
    assert expired.state == "enforce"


@given(st.lists(st.tuples(st.sampled_from(["", "c1", "c2"]), st.sampled_from([None, 1, 2])),
                max_size=30))
def test_action_log_groups_keep_every_record_once(keys: list[tuple[str, int | None]]) -> None:
    """Grouping a page of records (newest first) by delivery, else step, shows each record
    exactly once, every group newest first, and the groups in order of their newest record."""
    rows: list[dict[str, Any]] = [
        {"record": {"seq": len(keys) - i, "kind": "intent", "step_id": step}, "summary": [],
         "correlation": cid} for i, (cid, step) in enumerate(keys)]
    groups = group(rows)
    seqs = [row["record"]["seq"] for g in groups for row in g.rows]
    assert sorted(seqs) == sorted(r["record"]["seq"] for r in rows)
    for g in groups:
        inner = [row["record"]["seq"] for row in g.rows]
        assert inner == sorted(inner, reverse=True)
        assert len({row["correlation"] or row["record"]["step_id"] or row["record"]["seq"]
                    for row in g.rows}) == 1
    heads = [g.head["record"]["seq"] for g in groups]
    assert heads == sorted(heads, reverse=True)
