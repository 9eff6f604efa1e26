"""The webhook's parse skips checks that cannot fail on the body at hand (no \\u escape, so no
NUL or lone surrogate; too few brackets to nest too deep): it must refuse and accept exactly
what the full checks do."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder import jsontext
from responder.intake.alertmanager import PayloadError, parse_payload, payload_alerts


def full(body: bytes) -> object:
    try:
        data = jsontext.loads(body)
    except jsontext.JSONTextError as e:
        return ("malformed", str(e))
    try:
        alerts = payload_alerts(data)  # every check, whatever the body
    except PayloadError as e:
        return ("refused", e.field)
    return [a.to_json() for a in alerts]


def fast(body: bytes) -> object:
    try:
        alerts = parse_payload(body)
    except PayloadError as e:
        return ("malformed", e.args[0].removeprefix("malformed JSON: ")) if not e.field else (
            "refused", e.field)
    return [a.to_json() for a in alerts]


def webhook(labels: dict[str, str], ensure_ascii: bool) -> bytes:
    alert: dict[str, Any] = {"status": "firing", "labels": labels,
                             "startsAt": "2026-11-23T05:32:58Z", "fingerprint": "f1"}
    return json.dumps({"version": "4", "status": "firing", "alerts": [alert]},
                      ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(st.characters(codec=None), max_size=5),
                       st.text(st.sampled_from("a\x00\ud800\udfff\u00e9\U0001f600\\\"u"),
                               max_size=5), max_size=3),
       st.booleans())
def test_the_webhook_parse_answers_as_every_check_does(labels: dict[str, str],
                                                       ensure_ascii: bool) -> None:
    body = webhook(labels, ensure_ascii)
    if not ensure_ascii and any("\ud800" <= c <= "\udfff" for v in labels.values() for c in v):
        return  # raw surrogate bytes are not UTF-8: both refuse them as JSON, checked below
    outcome = fast(body)
    if isinstance(outcome, tuple) and outcome[0] == "malformed":
        assert isinstance(full(body), tuple)
    else:
        assert outcome == full(body)


@pytest.mark.parametrize("depth", [1, 31, 32, 33, 40])
def test_nesting_is_refused_past_the_limit_whatever_the_brackets(depth: int) -> None:
    doc = "[" * depth + "]" * depth
    if depth > jsontext.MAX_DEPTH:
        with pytest.raises(jsontext.JSONTextError):
            jsontext.loads(doc)
    else:
        assert jsontext.loads(doc) is not None
    # Brackets in strings count towards the cheap test, never towards the depth.
    assert jsontext.loads(json.dumps({"s": "[{" * 40})) == {"s": "[{" * 40}
