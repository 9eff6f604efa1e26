"""The appender's record bytes: what record_text() makes of each entry, by its fast path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.store.actionlog import GENESIS, ChainAppender, Entry, Head
from responder.store.kinds import Kind
from responder.tlog import records
from responder.tlog.merkle import Frontier
from responder.tlog.records import record_text

details = st.dictionaries(
    st.text(max_size=6),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                 lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=10),
    max_size=4)


def _appender(signed_hash: str = "") -> ChainAppender:
    return ChainAppender(None, "a" * 64, Head(0, GENESIS, Frontier()),  # type: ignore[arg-type]
                         signed_hash=signed_hash)


def _as_before(chain: ChainAppender, row: tuple[Any, ...], entry: Entry) -> dict[str, Any]:
    """The record as the appender built it before: the Kind itself as its kind."""
    return {"seq": row[0], "at": row[1].isoformat(), "kind": entry.kind,
            "rules_hash": chain.rules_hash,
            **({"rules_signed_hash": chain.signed_hash} if chain.signed_hash else {}),
            "incident_id": entry.incident_id, "rule_id": entry.rule_id,
            "control": entry.control, "key": entry.key, "step_id": entry.step_id,
            "correlation_id": entry.correlation_id, "detail": dict(entry.detail or {})}


def test_a_plain_entry_of_any_kind_skips_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry whose fields are plain values is written without record_text()'s slow walk,
    whatever its Kind."""
    def walked(self: object, value: object) -> object:
        raise AssertionError("record_text walked a plain record")

    monkeypatch.setattr(records._Walk, "safe", walked)
    chain = _appender()
    chain.add(*(Entry(kind, incident_id=1, rule_id="r", control="c", key="k", step_id=2,
                      correlation_id="cid", detail={"status": "applied", "ms": 1.5})
                for kind in Kind))
    assert len(chain._rows) == len(Kind)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Kind)), details, st.sampled_from(["", "b" * 64]),
       st.one_of(st.none(), st.integers(min_value=1, max_value=2**40)))
def test_record_bytes_are_record_texts_of_the_entry(kind: Kind, detail: dict[str, Any],
                                                    signed_hash: str,
                                                    incident_id: int | None) -> None:
    """The stored body is byte for byte what record_text() makes of the record with the Kind
    itself in it, so records written before and after read the same."""
    chain = _appender(signed_hash)
    entry = Entry(kind, incident_id=incident_id, control="c", detail=detail)
    chain.add(entry)
    row = chain._rows[0]
    assert row[8] == record_text(_as_before(chain, row, entry))
