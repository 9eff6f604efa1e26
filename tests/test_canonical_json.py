"""canonical() and plain_json() write the standard library's sorted compact JSON through a
faster encoder where it spells values the same; the bytes must never differ."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.store.actionlog import canonical
from responder.tlog.records import _Walk, plain_json, record_text


def reference(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
           | st.datetimes() | st.uuids() | st.binary(max_size=4))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.tuples(inner, inner)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=24)


@settings(max_examples=800, deadline=None)
@given(st.dictionaries(st.text(max_size=6), values, max_size=6))
def test_canonical_is_the_standard_librarys_bytes(value: dict[str, Any]) -> None:
    assert canonical(value) == reference(value)


def test_values_the_fast_encoder_spells_otherwise_take_the_standard_path() -> None:
    values: list[dict[str, Any]] = [
        {"f": 1e-5}, {"f": 1e16}, {"f": float("nan")}, {"i": 2**64},
        {"t": dt.datetime(2026, 12, 1, tzinfo=dt.UTC)}, {"u": uuid.UUID(int=5)},
        {"s": "\ud800"}, {"d": {1: "int key"}}, {"z": -0.0}, {"f": 1e17}, {"f": 3.0},
        {"f": float("inf")}, {"\U0001f600": 1, "\uffff": 2}]
    for value in values:
        assert canonical(value) == reference(value), value


@settings(max_examples=800, deadline=None)
@given(st.dictionaries(st.text(max_size=6), values, max_size=6))
def test_record_text_skips_the_walk_only_where_it_would_change_nothing(
        value: dict[str, Any]) -> None:
    walk = _Walk()
    safe = walk.safe(value)
    expected = (rfc8785.dumps(safe).decode() if walk.slow
                else json.dumps(safe, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    assert record_text(value) == expected


def test_plain_json_keeps_deep_nesting() -> None:
    deep: Any = "leaf"
    for _ in range(300):  # past the faster encoder's own nesting limit
        deep = [deep]
    assert plain_json({"v": deep}) == json.dumps({"v": deep}, separators=(",", ":"))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=6))
def test_dedup_keys_digest_the_standard_librarys_label_bytes(labels: dict[str, str]) -> None:
    import hashlib

    from responder.model import Alert

    text = json.dumps(labels, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    alert = Alert("kafka", "f", "firing", labels, {}, "2026-11-23T05:32:58Z")
    assert alert.dedup_key == f"kafka|f|2026-11-23T05:32:58Z|firing|{digest}"
