"""The threshold evaluator: `for` in sample time, hysteresis, the series limit, stale series
and out-of-order samples."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from responder.engine.series import rfc3339
from responder.engine.thresholds import Evaluator
from responder.intake.alertmanager import PayloadError
from responder.intake.samples import parse_samples
from responder.model import Alert
from responder.rules.loader import load_rules
from tests.test_rules import ENV, ROOT

T0 = 1_795_000_000.0
LAG = "settlement_lag_p99"


@pytest.fixture
def evaluator() -> Evaluator:
    table = load_rules(ROOT / "rules", env=ENV)
    return Evaluator(table, max_series=3, stale_after_s=300, clock=lambda: T0 + 10_000)


def feed(ev: Evaluator, values: Sequence[float], start: float = 0, step: float = 15,
         labels: dict[str, str] | None = None) -> list[tuple[float, Alert]]:
    """Feed one series sample by sample; the alerts raised, with the time that raised them."""
    out = []
    for i, value in enumerate(values):
        at = start + i * step
        ev.observe([(LAG, labels or {}, value, T0 + at)])
        out += [(at, a) for a in ev.take()]
    return out


def brief(raised: list[tuple[float, Alert]]) -> list[str]:
    return [f"{a.status} {a.labels['alertname']} {at:g}" for at, a in raised]


def test_crosses_t2_then_t3_hovers_and_clears(evaluator: Evaluator) -> None:
    """Crossing T2 then T3 fires each once `for` has held; hovering between the threshold and
    its clear line raises nothing; dropping below clear resolves."""
    values = [10, 35, 40, 50, 60, 80, 125, 130, 140, 115, 125, 95, 118, 85, 28, 32, 25, 18]
    raised = feed(evaluator, values)
    assert brief(raised) == ["firing SettlementLagHigh 75", "firing SettlementLagCritical 120",
                             "resolved SettlementLagCritical 195",
                             "resolved SettlementLagHigh 255"]
    firing, resolved = raised[0][1], raised[3][1]
    assert firing.source == "metrics" and firing.starts_at == rfc3339(T0 + 15)
    assert resolved.starts_at == firing.starts_at and resolved.ends_at == rfc3339(T0 + 255)
    assert resolved.fingerprint == firing.fingerprint
    assert firing.annotations["value"] == "80"


def test_a_spike_shorter_than_for_raises_nothing(evaluator: Evaluator) -> None:
    """A value above T3 for less than `for` raises nothing and leaves no pending timer."""
    assert feed(evaluator, [10, 150, 150, 10, 150, 150]) == []


def test_the_series_limit_counts_new_series_and_never_evaluates_them(
        evaluator: Evaluator) -> None:
    """Past max_series, samples of new series are counted and ignored; known ones go on."""
    for venue in "abcde":
        evaluator.observe([(LAG, {"venue": venue}, 200.0, T0)])
    assert evaluator.live_series == 3 and evaluator.counts.series_limit == 2
    evaluator.observe([(LAG, {"venue": "e"}, 200.0, T0 + 60),
                       (LAG, {"venue": "a"}, 200.0, T0 + 60)])
    assert evaluator.counts.series_limit == 3
    raised = evaluator.take()
    assert {a.labels["venue"] for a in raised} == {"a"}


def test_stale_series_are_forgotten_and_their_alerts_resolved(evaluator: Evaluator) -> None:
    """A series silent for stale_after_s of sample time is forgotten; a firing one resolves."""
    fired = feed(evaluator, [200, 200, 200, 200, 200], labels={"venue": "quiet"})
    assert len(fired) == 2
    assert feed(evaluator, [5], start=260, labels={"venue": "busy"}) == []
    assert evaluator.live_series == 2
    raised = feed(evaluator, [5], start=60 + 400, labels={"venue": "busy"})
    assert evaluator.live_series == 1 and evaluator.counts.forgotten == 1
    assert brief(raised) == ["resolved SettlementLagHigh 460",
                             "resolved SettlementLagCritical 460"]
    assert all(a.annotations["resolved_by"] == "stale" for _, a in raised)
    assert raised[0][1].ends_at == rfc3339(T0 + 60)


def test_out_of_order_samples_are_dropped_and_counted(evaluator: Evaluator) -> None:
    """A sample not newer than its series' last is dropped, so a late low value cannot
    reset a pending timer and a replayed batch raises nothing twice."""
    evaluator.observe([(LAG, {}, 35.0, T0), (LAG, {}, 35.0, T0 + 30)])
    evaluator.observe([(LAG, {}, 5.0, T0 + 20), (LAG, {}, 35.0, T0 + 30)])
    assert evaluator.counts.out_of_order == 2
    evaluator.observe([(LAG, {}, 35.0, T0 + 60)])
    assert brief([(60, a) for a in evaluator.take()]) == ["firing SettlementLagHigh 60"]


def test_samples_from_the_far_future_and_unwatched_metrics_are_not_evaluated(
        evaluator: Evaluator) -> None:
    """A ts beyond the future horizon is dropped; a metric no rule watches costs no series."""
    evaluator.observe([(LAG, {}, 500.0, T0 + 20_000), ("other_metric", {}, 1.0, T0)])
    assert evaluator.counts.future == 1 and evaluator.counts.ignored == 1
    assert evaluator.live_series == 0


def test_a_reload_keeps_state_of_unchanged_rules(evaluator: Evaluator) -> None:
    """After a reload with the same conditions, a pending `for` carries on."""
    feed(evaluator, [35, 35, 35])
    evaluator.bind(load_rules(ROOT / "rules", env=ENV))
    assert brief(feed(evaluator, [35, 35], start=45)) == ["firing SettlementLagHigh 60"]


def test_replaying_the_same_samples_raises_the_same_alert() -> None:
    """A fresh evaluator fed the same samples (a restart) raises an identical alert, which
    the inbox treats as a re-delivery."""
    table = load_rules(ROOT / "rules", env=ENV)
    first, second = (Evaluator(table, max_series=10, stale_after_s=300,
                               clock=lambda: T0 + 10_000) for _ in range(2))
    [(_, a)] = feed(first, [35, 35, 35, 35, 35])
    [(_, b)] = feed(second, [35, 35, 35, 35, 35])
    assert a.dedup_key == b.dedup_key


@pytest.mark.parametrize(("body", "where"), [
    (b"{not json", "malformed JSON"),
    (b'{"name": "x", "value": 1}', "0: missing field(s): ts"),
    (b'[{"name": "x", "value": true, "ts": 1}]', "0.value"),
    (b'[{"name": "x", "value": 1, "ts": 1700000000000}]', "not ms"),
    (b'{"samples": [{"name": "1x", "value": 1, "ts": 1}]}', "samples.0.name"),
    (b'{"samples": [{"name": "x", "labels": {"a": 1}, "value": 1, "ts": 1}]}', "labels.a"),
    (b'{"samples": [{"name": "x", "labels": {"a": "\\u0000"}, "value": 1, "ts": 1}]}',
     "labels.a"),
    (b'[{"name": "x", "value": 1, "ts": 1, "extra": 2}]', "unknown field"),
    (b'{"samples": [], "more": 1}', "only samples"),
])
def test_poison_sample_messages_are_refused(body: bytes, where: str) -> None:
    """Malformed messages raise PayloadError naming the problem; nothing is half-evaluated."""
    with pytest.raises(PayloadError) as e:
        parse_samples(body, 10_000)
    assert where in str(e.value)


def test_sample_message_shapes() -> None:
    """One sample, an array, or {"samples": [...]} all parse to the same tuples."""
    one = b'{"name": "lag", "labels": {"v": "a"}, "value": 3, "ts": 1700000000.5}'
    assert parse_samples(one, 1000) == [("lag", {"v": "a"}, 3.0, 1700000000.5)]
    assert parse_samples(b"[" + one + b"]", 1000) == parse_samples(
        b'{"samples": [' + one + b"]}", 1000)
    [(_, _, value, _)] = parse_samples(b'{"name": "x", "value": 1e999, "ts": 1}', 1000)
    assert value == float("inf")  # a value past float range reads as +Inf, as in Prometheus
