"""Bad input on ``/v1``: any text field holding NUL or a lone surrogate, and a number of
any length anywhere in a body, get a 400 naming the problem and a metric, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responder.api import routes
from responder.api.bodies import Body
from responder.api.filters import ActionQuery
from responder.api.jsonbody import MAX_NUMBER_CHARS
from responder.metrics import Metrics
from tests.conftest import ADMIN_TOKEN, VIEWER_TOKEN, DaemonFactory, url
from tests.live_daemon import LiveDaemon, live_daemon

# A body each model accepts; the generated value replaces one field of it.
VALID: dict[str, dict[str, Any]] = {
    "ModeChange": {"mode": "enforce", "reason": "drill"},
    "BreakGlassStart": {"ttl_s": 60, "reason": "drill"},
    "BreakGlassEnd": {"reason": "drill"},
    "ReleaseChange": {"to_level": "NORMAL", "reason": "drill", "ticket": "INC-1"},
    "ContainChange": {"to_level": "HARD_HALT", "reason": "drill"},
}
PATHS = {"control": "symbol-mode", "key": "ETH-USD", "request_id": "1", "incident_id": "1"}
BODIED = [op for op in routes.OPERATIONS if op.body is not None]
TEXT_FIELDS = [(op, name) for op in BODIED if op.body is not None
               for name, info in op.body.model_fields.items() if info.annotation is str]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDaemon]:
    with live_daemon(tmp_path_factory.mktemp("api-input")) as running:
        yield running


def _path(op: routes.Operation) -> str:
    return op.path.format(**PATHS)


async def _send(address: str, method: str, data: bytes) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.request(
            method, yarl.URL(address, encoded=True), data=data, headers=headers) as resp:
        return resp.status, await _answer(resp)


async def _answer(resp: aiohttp.ClientResponse) -> Any:
    """The JSON answer; aiohttp's own 404 for an unroutable path is plain text."""
    if resp.content_type != "application/json":
        return {"error": None, "text": await resp.text()}
    return await resp.json()


def _rejected(live: LiveDaemon, code: str) -> float:
    assert live.daemon.state is not None
    metrics: Metrics = live.daemon.state.metrics
    return float(metrics.rejected.labels("api", code)._value.get())


def _unstorable(text: str) -> bool:
    return "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def test_every_text_field_is_covered() -> None:
    """The generated test below reaches the reasons of mode and break-glass, not only
    the release fields."""
    named = {(op.body.__name__, name) for op, name in TEXT_FIELDS}  # type: ignore[union-attr]
    assert {("ModeChange", "reason"), ("BreakGlassStart", "reason"),
            ("BreakGlassEnd", "reason"), ("ReleaseChange", "ticket")} <= named


@given(target=st.sampled_from(TEXT_FIELDS),
       text=st.text(st.characters(codec=None, exclude_categories=()), min_size=1,
                    max_size=20).map(lambda t: t + "\x00" if not _unstorable(t) else t)
       | st.text(max_size=20))
@SETTINGS
def test_no_text_field_takes_nul_or_a_lone_surrogate(live: LiveDaemon,
                                                     target: tuple[routes.Operation, str],
                                                     text: str) -> None:
    """NUL or a lone surrogate in any text field is a 400 naming the field and counted;
    other text is never a 5xx."""
    op, field = target
    assert op.body is not None
    body = {**VALID[op.body.__name__], field: text}
    before = _rejected(live, "invalid_field")
    status, answer = live.run(_send(f"{live.url}{_path(op)}", op.method,
                                    json.dumps(body).encode()))
    assert status < 500, (op.path, answer)
    if _unstorable(text):
        assert (status, answer["error"]) == (400, "invalid_field")
        assert answer["message"].startswith(field)
        assert _rejected(live, "invalid_field") == before + 1


def _literal(digits: int, kind: str) -> str:
    body = "7" * digits
    return {"int": body, "negative": "-" + body, "fraction": "0." + body,
            "exponent": body + "e2"}[kind]


@given(op=st.sampled_from(BODIED), digits=st.integers(MAX_NUMBER_CHARS + 1, 6000),
       kind=st.sampled_from(["int", "negative", "fraction", "exponent"]),
       where=st.sampled_from(["field", "nested", "extra"]))
@SETTINGS
def test_no_body_takes_a_number_of_thousands_of_digits(live: LiveDaemon, op: routes.Operation,
                                                       digits: int, kind: str,
                                                       where: str) -> None:
    """A number literal too long to be anything an operator meant, in any field, nested or
    not, is a 400 ``number_too_long`` (a 500 while json.loads raised a bare ValueError)."""
    assert op.body is not None
    body: dict[str, Any] = dict(VALID[op.body.__name__])
    first = next(iter(body))
    marker = "__NUMBER__"
    if where == "field":
        body[first] = marker
    elif where == "nested":
        body[first] = {"deep": [1, marker]}
    else:
        body["extra"] = marker
    data = json.dumps(body).replace(f'"{marker}"', _literal(digits, kind)).encode()
    before = _rejected(live, "number_too_long")
    status, answer = live.run(_send(f"{live.url}{_path(op)}", op.method, data))
    assert (status, answer["error"]) == (400, "number_too_long")
    assert _rejected(live, "number_too_long") == before + 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused(live: LiveDaemon, literal: str) -> None:
    """JSON has no NaN or Infinity, and 1e400 is one in disguise: all are 400s."""
    data = f'{{"ttl_s": {literal}, "reason": "drill"}}'.encode()
    status, answer = live.run(_send(f"{live.url}/v1/break-glass", "POST", data))
    assert status == 400 and answer["error"] in ("malformed_json", "number_out_of_range")


def test_models_cover_every_body() -> None:
    """Every operation that takes a body parses it with a forbid-extra model."""
    for op in BODIED:
        assert op.body is not None and issubclass(op.body, Body)
        assert op.body.model_config.get("extra") == "forbid"


async def test_limit_zero_is_refused(make_daemon: DaemonFactory,
                                     http: aiohttp.ClientSession) -> None:
    """``limit=0`` on /v1/actions is a 400 saying the range; it used to mean 100 silently."""
    daemon = await make_daemon()
    headers = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    async with http.get(url(daemon, "/v1/actions?limit=0"), headers=headers) as resp:
        answer = await resp.json()
        assert (resp.status, answer["error"]) == (400, "invalid_query")
        assert answer["message"].startswith("limit")
    async with http.get(url(daemon, "/v1/actions?limit=1"), headers=headers) as resp:
        page = await resp.json()
        assert resp.status == 200 and len(page["records"]) <= 1


QUERY_TEXT = ["rule", "control", "kind", "correlation_id"]
assert set(QUERY_TEXT) <= set(ActionQuery.model_fields)
PATH_TEXT = ["/v1/controls/{text}/BTC-USD/contain", "/v1/controls/symbol-mode/{text}/contain",
             "/v1/controls/{text}/-/release"]


async def _get(address: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession() as http, http.get(yarl.URL(address, encoded=True),
                                                          headers=headers) as resp:
        return resp.status, await _answer(resp)


def _encoded(text: str) -> str:
    # surrogatepass: a lone surrogate goes on the wire as the bytes a careless client sends
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=20)
# Half the cases hold a NUL somewhere: plain generated text rarely does.
WITH_NUL = ANY_TEXT | st.tuples(ANY_TEXT, st.integers(0, 20)).map(
    lambda t: t[0][:t[1]] + "\x00" + t[0][t[1]:])


@given(name=st.sampled_from(QUERY_TEXT), text=WITH_NUL)
@SETTINGS
def test_no_query_filter_takes_nul(live: LiveDaemon, name: str, text: str) -> None:
    """Any text in any filter of /v1/actions is answered below 500, and NUL is a 400."""
    status, answer = live.run(_get(f"{live.url}/v1/actions?{name}={_encoded(text)}"))
    assert status < 500, answer
    if "\x00" in text:
        assert (status, answer["error"]) == (400, "invalid_query")


@given(path=st.sampled_from(PATH_TEXT), text=WITH_NUL)
@SETTINGS
def test_no_path_part_takes_nul(live: LiveDaemon, path: str, text: str) -> None:
    """Any text as a control or key in the path is answered below 500, and NUL is a 400."""
    address = f"{live.url}{path.format(text=_encoded(text))}"
    body = json.dumps({"to_level": "HARD_HALT", "reason": "drill"}).encode()
    status, answer = live.run(_send(address, "POST", body))
    assert status < 500, answer
    if "\x00" in text and "/" not in text:  # a slash makes it another (unrouted) path
        assert (status, answer["error"]) == (400, "invalid_field")
