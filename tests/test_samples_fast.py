"""The column-at-a-time fast paths decide exactly what the sample-by-sample paths decide.

``parse_samples`` checks a message in the usual shape column by column, the evaluator
takes a calm batch at once, and a repeat of a calm batch's label sets by one key; all fall
back to the per-sample code for anything else. These
properties run random messages and sample streams through both and compare the results:
the same samples or the same refusal (naming the same field), the same alerts, the same
counts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responder.engine import series as live_series
from responder.engine.series import Repeats
from responder.engine.thresholds import Evaluator, Sample
from responder.intake import samples
from responder.intake.alertmanager import PayloadError
from responder.intake.message import decode_message
from responder.intake.samples import parse_samples
from responder.rules.loader import load_rules
from responder.rules.table import RuleTable
from tests.test_rules import ENV, ROOT

T0 = 1_795_000_000.0
LAG = "settlement_lag_p99"
PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@contextmanager
def per_sample_only() -> Iterator[None]:
    """The reference: every fast path off, every sample through the per-sample code."""

    def never_calm(series: Any) -> None:
        series.lo, series.hi = live_series.NEVER_CALM

    with patch.object(samples, "_columns", lambda data: None), \
            patch.object(Evaluator, "_observe_calm", lambda self, rows, key: False), \
            patch.object(Evaluator, "_observe_repeat", lambda self, key, batch: False), \
            patch.object(live_series.Series, "settle", never_calm):
        yield


# --- Messages: mostly well-formed samples, with every kind of flaw now and then.

label_names = st.sampled_from(["venue", "shard", "symbol", "9bad", "", "a" * 201])
label_values = st.one_of(st.sampled_from(["main", "s1", "BTC-USD", "", "é", "a\x00b",
                                          "x" * 1024, "x" * 1025, "\ud800"]),
                         st.integers(0, 3), st.none())
numbers = st.one_of(st.floats(0, 200), st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-2**64, 2**64), st.just(10**45), st.booleans(), st.text(max_size=2),
                    st.none())
timestamps = st.one_of(st.floats(T0, T0 + 1000), st.integers(0, 2 * 10**11), st.just(10**45),
                       st.floats(allow_nan=True, allow_infinity=True), st.just(T0 * 1000))


@st.composite
def sample_objects(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.one_of(st.none(), st.integers(), st.text(max_size=4),
                              st.lists(st.integers(), max_size=4)))
    good = draw(st.booleans())
    item: dict[str, Any] = {
        "name": LAG if good else draw(st.sampled_from([LAG, "other_metric", "bad-name", 3])),
        "labels": ({"venue": "main", "shard": draw(st.sampled_from(["s1", "s2", "s3"]))}
                   if good else draw(st.one_of(
                       st.dictionaries(label_names, label_values, max_size=3),
                       st.lists(st.text(max_size=2), max_size=2), st.none()))),
        "value": draw(st.floats(0, 200)) if good else draw(numbers),
        "ts": draw(st.floats(T0, T0 + 1000)) if good else draw(timestamps),
    }
    if not good and draw(st.integers(0, 4)) == 0:
        del item[draw(st.sampled_from(sorted(item)))]
    if not good and draw(st.integers(0, 6)) == 0:
        item["extra"] = 1
    return item


def outcome(message: bytes, *, reference: bool = False) -> list[Sample] | str:
    """What parse_samples makes of a message; with ``reference``, what the code before the
    fast paths made of it: decode_message's checked parse, then sample by sample."""
    try:
        if reference:
            with per_sample_only():
                return samples._checked(decode_message(message, 1 << 20, max_depth=None))
        return parse_samples(message, 1 << 20)
    except PayloadError as e:
        return f"refused: {e}"


@PROPERTY
@given(st.lists(sample_objects(), max_size=12), st.booleans())
def test_a_message_is_parsed_or_refused_as_sample_by_sample(items: list[Any],
                                                            batch: bool) -> None:
    body = {"samples": items} if batch else items
    message = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert outcome(message) == outcome(message, reference=True)
    got = outcome(message)
    if isinstance(got, list):
        assert all(type(s[2]) is float and type(s[3]) is float for s in got)


# --- Sample streams: calm and not, repeated, out of order, new orders of the same labels.


@st.composite
def batches(draw: st.DrawFn) -> list[list[Sample]]:
    out = []
    at = 0.0
    for _ in range(draw(st.integers(1, 25))):
        batch: list[Sample] = []
        if draw(st.booleans()):  # a round: live series once each, mostly calm
            at += 15.0
            for shard in draw(st.permutations(["s1", "s2", "s3", "s4"])):
                value = draw(st.sampled_from([5.0] * 8 + [25.0, 31.0, 125.0]))
                either = draw(st.sampled_from([{"venue": "main", "shard": shard},
                                               {"shard": shard, "venue": "main"}]))
                batch.append((LAG, either, value, T0 + at))
            out.append(batch)
            continue
        for _ in range(draw(st.integers(0, 8))):
            at += draw(st.sampled_from([0.0, 5.0, 15.0, 40.0, -30.0, 400.0]))
            shard = draw(st.sampled_from(["s1", "s2", "s3", "s4", "s5"]))
            labels: Any = draw(st.sampled_from([
                {"venue": "main", "shard": shard}, {"shard": shard, "venue": "main"},
                {"shard": shard}]))
            if draw(st.integers(0, 15)) == 0:
                labels = MappingProxyType(labels)
            name = LAG if draw(st.integers(0, 12)) else "not_watched"
            value = draw(st.sampled_from([5.0, 25.0, 30.0, 31.0, 95.0, 125.0, 500.0]))
            ts = T0 + at + (10**6 if draw(st.integers(0, 30)) == 0 else 0)
            batch.append((name, labels, value, ts))
        out.append(batch)
    return out


@functools.cache
def table() -> RuleTable:
    return load_rules(ROOT / "rules", env=ENV)


def run(stream: list[list[Sample]]) -> tuple[list[tuple[Any, ...]], Any, int]:
    ev = Evaluator(table(), max_series=8, stale_after_s=300, clock=lambda: T0 + 10_000)
    raised = []
    for batch in stream:
        ev.observe(batch)
        raised += [(a.status, a.fingerprint, sorted(a.labels.items()), a.starts_at, a.ends_at,
                    sorted(a.annotations.items())) for a in ev.take()]
    return raised, ev.counts, ev.live_series


@PROPERTY
@given(batches())
def test_calm_batches_raise_and_count_as_sample_by_sample(stream: list[list[Sample]]) -> None:
    got = run(stream)
    with per_sample_only():
        want = run(stream)
    assert got == want


def test_a_calm_batch_moves_only_the_series_clock() -> None:
    """The fast path's own case: known series, each once, in order, below every threshold."""
    ev = Evaluator(table(), max_series=10, stale_after_s=300, clock=lambda: T0 + 10_000)
    first = [(LAG, {"venue": "main", "shard": f"s{i}"}, 5.0, T0) for i in range(5)]
    ev.observe(first)
    calm: list[Sample] = [(LAG, {"venue": "main", "shard": f"s{i}"}, 6.0, T0 + 15)
                          for i in range(5)]
    assert ev._observe_calm(calm, None)
    assert ev.counts.evaluated == 10 and not ev.take()
    # A value above T2 is not calm; the batch is refused whole and then taken one by one.
    hot: list[Sample] = [(LAG, {"venue": "main", "shard": f"s{i}"}, 40.0, T0 + 30)
                         for i in range(5)]
    assert not ev._observe_calm(hot, None)
    assert ev.counts.evaluated == 10
    ev.observe(hot)
    assert ev.counts.evaluated == 15


@pytest.mark.parametrize("labels", [{"shard": "s1", "venue": "main"},
                                    {"venue": "main", "shard": "s1"}])
def test_labels_in_any_order_are_one_series(labels: dict[str, str]) -> None:
    ev = Evaluator(table(), max_series=10, stale_after_s=300, clock=lambda: T0 + 10_000)
    ev.observe([(LAG, {"venue": "main", "shard": "s1"}, 5.0, T0)])
    ev.observe([(LAG, labels, 5.0, T0 + 15)])
    ev.observe([(LAG, labels, 5.0, T0 + 15)])
    assert ev.live_series == 1
    assert ev.counts.evaluated == 2 and ev.counts.out_of_order == 1


@pytest.mark.parametrize("number", ["7" * 45, "7" * 5000, "1." + "0" * 60 + "1"])
def test_long_numbers_are_refused_or_read_as_before(number: str) -> None:
    """A run of digits that jsontext's scan would catch: the same refusal or the same
    samples, whether or not the plain parse that skips the scan read it."""
    for where in ("value", "ts"):
        item = {"name": LAG, "labels": {"venue": "main"}, "value": 5.0, "ts": T0}
        text = json.dumps({"samples": [item, dict(item, **{where: "__n__"})]})
        message = text.replace('"__n__"', number).encode()
        assert outcome(message) == outcome(message, reference=True)
    bad = json.dumps({"samples": [item], "x": "__n__"}).replace('"__n__"', "9" * 50).encode()
    assert outcome(bad) == outcome(bad, reference=True)
    assert str(outcome(bad)).startswith("refused: malformed JSON: an integer of 50 digits")


# --- Messages through observe_message: a repeat of a calm batch's label sets skips the
# label checks and the lookups, so a message that only looks like a repeat must not.

SHARDS = ["s1", "s2", "s3", "s4"]


@st.composite
def near_repeat(draw: st.DrawFn, labels: list[Any]) -> list[Any]:
    """Labels that nearly repeat these: the same values text split elsewhere by NULs (or
    over fewer samples), a label moved to another sample, one too many or too few, another
    type or name."""
    i = draw(st.integers(0, len(labels) - 1))
    kind = draw(st.integers(0, 8))
    labels = [dict(lb) for lb in labels]
    if kind == 0:  # two samples' values text folded into one sample's
        return [{"venue": f"{a['venue']}\x00{a['shard']}", "shard": f"{b['venue']}\x00{b['shard']}"}
                for a, b in zip(labels[::2], labels[1::2], strict=False)] or labels
    if kind == 1:
        labels[i] = {"venue": f"main\x00{labels[i]['shard']}", "shard": ""}
    elif kind == 2 and len(labels) > 1:  # as many labels in all, differently shared
        j = (i + 1) % len(labels)
        labels[j]["shard2"] = labels[i].pop("shard")
    elif kind == 3:
        labels[i]["extra"] = "x"
    elif kind == 4:
        del labels[i]["venue"]
    elif kind == 5:
        labels[i] = draw(st.sampled_from(["ab", ["venue", "shard"], None, 7]))
    elif kind == 6:
        labels[i]["shard"] = draw(st.one_of(st.integers(0, 3), st.none(), label_values))
    elif kind == 7:
        labels[i] = {("9bad" if k == "shard" else k): v for k, v in labels[i].items()}
    else:
        labels[i] = {"shard": labels[i]["shard"], "venue": labels[i]["venue"]}
    return labels


@st.composite
def near_repeats(draw: st.DrawFn) -> list[bytes]:
    """Rounds of the same series in two batchings, mostly calm and in order, now and then
    a near repeat, another metric in the batch, a hot or odd value, or a long gap that
    makes the series not in the batch stale."""
    out = []
    at = 0.0
    for _ in range(draw(st.integers(1, 40))):
        at += draw(st.sampled_from([15.0] * 12 + [0.0, -30.0, 400.0]))
        labels: list[Any] = [{"venue": "main", "shard": s}
                             for s in draw(st.sampled_from([SHARDS, SHARDS[:2]]))]
        if draw(st.integers(0, 2)) == 0:
            labels = draw(near_repeat(labels))
        items = [{"name": LAG, "labels": lb, "ts": T0 + at,
                  "value": draw(st.sampled_from([5.0] * 30 + [31.0, 125.0, 7, float("nan")]))}
                 for lb in labels]
        if draw(st.integers(0, 10)) == 0:
            items[draw(st.integers(0, len(items) - 1))]["name"] = draw(
                st.sampled_from(["not_watched", "bad-name"]))
        out.append(json.dumps({"samples": items}, ensure_ascii=False).encode(
            "utf-8", "surrogatepass"))
    return out


def run_messages(messages: list[bytes]) -> tuple[list[Any], Any, int]:
    ev = Evaluator(table(), max_series=8, stale_after_s=300, clock=lambda: T0 + 10_000)
    seen: list[Any] = []
    for message in messages:
        try:
            samples.observe_message(ev, message, 1 << 20)
        except PayloadError as e:
            seen.append(f"refused: {e}")
        seen += [(a.status, a.fingerprint, a.starts_at, a.ends_at) for a in ev.take()]
    return seen, ev.counts, ev.live_series


@PROPERTY
@given(near_repeats())
def test_near_repeats_are_refused_and_evaluated_as_sample_by_sample(
        messages: list[bytes]) -> None:
    """Messages that repeat a calm batch's label sets, exactly or nearly: the same
    refusals, alerts and counts as with every fast path off."""
    got = run_messages(messages)
    with per_sample_only():
        want = run_messages(messages)
    assert got == want


def test_an_exact_repeat_skips_the_label_checks_and_a_near_one_does_not() -> None:
    """The second round of the same batch is taken without its checks; a batch whose
    values text is the same but split elsewhere by a NUL is checked, and refused."""
    ev = Evaluator(table(), max_series=10, stale_after_s=300, clock=lambda: T0 + 10_000)

    def message(at: float, labels: list[dict[str, str]]) -> bytes:
        return json.dumps({"samples": [{"name": LAG, "labels": lb, "value": 5.0,
                                        "ts": T0 + at} for lb in labels]}).encode()

    two = [{"venue": "main", "shard": "s1"}, {"venue": "main", "shard": "s2"}]
    for at in (0.0, 15.0):  # the first makes the series, the second stores the batch
        samples.observe_message(ev, message(at, two), 1 << 20)
    with patch.object(samples, "_labels_ok", side_effect=AssertionError("checked")):
        samples.observe_message(ev, message(30.0, two), 1 << 20)
    assert ev.counts.evaluated == 6
    split = [{"venue": "main\x00s1", "shard": "main"}, {"venue": "s2", "shard": ""}]
    assert Repeats.key((LAG, LAG), split) != Repeats.key((LAG, LAG), two)
    shifted = [{"venue": "main", "shard": "s1\x00main"}, {"venue": "s2", "shard": ""}]
    with pytest.raises(PayloadError, match=r"samples\.0\.labels\.shard"):
        samples.observe_message(ev, message(45.0, shifted), 1 << 20)
    assert ev.counts.evaluated == 6
