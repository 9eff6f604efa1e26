"""The HTTP edge of intake: header bytes, encodings, numbers and reused fingerprints that
were 500s or hid alerts, each refused with a 4xx and a reason, or taken as a new alert."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re

import aiohttp
import pytest

from responder.api.actions import role_of
from responder.daemon import Daemon
from responder.intake import alertmanager, webhook
from responder.model import Alert
from tests.conftest import (
    WEBHOOK_TOKEN,
    DaemonFactory,
    Exchange,
    idle,
    log_kinds,
    post_alerts,
    url,
)
from tests.rawhttp import raw_request
from tests.test_events import SOURCES, event, send, signed
from tests.test_intake import _am, metric, metrics_text

NOT_UTF8 = b"Bearer \xff\xfe\xc3("


def v1_routes(daemon: Daemon) -> list[tuple[str, str]]:
    """Every ``/v1`` route of the running app that needs a token, placeholders filled in."""
    assert daemon._runner is not None
    routes = []
    for route in daemon._runner.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/v1") and route.method != "HEAD" and role_of(route.handler):
            routes.append((route.method, re.sub(r"\{[^}]+\}", "x1", path)))
    assert len(routes) > 5
    return routes


async def test_non_utf8_authorization_is_a_counted_401_with_a_challenge(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, exchange: Exchange, database: str,
) -> None:
    """Authorization bytes that are not UTF-8 get 401 with WWW-Authenticate, on the webhook
    and every /v1 route, and the request metric counts them."""
    daemon = await make_daemon()
    targets = [("POST", "/webhooks/alertmanager"), *v1_routes(daemon)]
    for method, path in targets:
        answer = await raw_request(daemon.port, method, path, [(b"Authorization", NOT_UTF8)],
                                   b"{}")
        assert answer.status == 401, (method, path, answer)
        assert answer.headers["www-authenticate"].startswith("Bearer "), (method, path)
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    text = await metrics_text(http, daemon)
    assert metric(text, "responder_http_requests_total", route="/webhooks/alertmanager",
                  code="401") == 1
    assert metric(text, "responder_http_requests_total", route="/v1/mode", code="401") == 2
    assert exchange.state.calls == [] and await log_kinds(database) == []


async def test_a_missing_token_is_challenged_without_an_error_code(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession,
) -> None:
    """A 401 for no token at all names the Bearer scheme (RFC 6750: no error attribute)."""
    daemon = await make_daemon()
    for path in ("/webhooks/alertmanager", "/v1/actions"):
        method = http.post if path.startswith("/webhooks") else http.get
        async with method(url(daemon, path)) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == 'Bearer realm="responder"'


@pytest.mark.parametrize("signature", [b"sha256=\xc3\xa9\xc3\xa9", b"sha256=\xff\xfe",
                                       "sha256=ü".encode()])
async def test_a_non_ascii_signature_is_a_401(make_daemon: DaemonFactory,
                                              signature: bytes) -> None:
    """A signature of non-ASCII characters (or not UTF-8 at all) is a bad signature."""
    daemon = await make_daemon(event_sources=SOURCES)
    body = event()
    headers = [(k.encode(), v.encode()) for k, v in signed(body).items()
               if k != "X-Responder-Signature"]
    answer = await raw_request(daemon.port, "POST", "/webhooks/events",
                               [*headers, (b"X-Responder-Signature", signature)], body)
    assert answer.status == 401
    assert json.loads(answer.body)["error"] == "bad_signature"
    assert answer.headers["www-authenticate"].startswith("ResponderSignature ")


@pytest.mark.parametrize("encoding", [b"gzip", b"deflate"])
async def test_a_body_that_is_not_its_encoding_is_a_400(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    encoding: bytes,
) -> None:
    """Content-Encoding: gzip (or deflate) over a body that is not is 400 bad_encoding."""
    daemon = await make_daemon(event_sources=SOURCES)
    body = _am()
    auth = [(b"Authorization", f"Bearer {WEBHOOK_TOKEN}".encode())]
    for path, headers in (("/webhooks/alertmanager", auth),
                          ("/webhooks/events",
                           [(k.encode(), v.encode()) for k, v in signed(body).items()])):
        answer = await raw_request(daemon.port, "POST", path,
                                   [*headers, (b"Content-Encoding", encoding)], body)
        assert answer.status == 400, (path, answer)
        assert json.loads(answer.body)["error"] == "bad_encoding"
    good = await raw_request(daemon.port, "POST", "/webhooks/alertmanager",
                             [*auth, (b"Content-Encoding", b"gzip")], gzip.compress(body))
    assert good.status == 200
    text = await metrics_text(http, daemon)
    assert metric(text, "responder_intake_rejected_total", source="alertmanager",
                  reason="bad_encoding") == 1


HUGE = "9" * 5000
BIG = "9" * 400


@pytest.mark.parametrize("number", [HUGE, BIG, f"-{BIG}"])
async def test_numbers_of_thousands_of_digits_are_a_400(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    database: str, number: str,
) -> None:
    """An integer of hundreds or thousands of digits anywhere in a body is malformed JSON:
    at the top, in an ignored field, in truncatedAlerts, in a signed event."""
    daemon = await make_daemon(event_sources=SOURCES)
    good = json.loads(_am())
    bodies = [number.encode(),
              json.dumps({**good, "extra": "N"}).replace('"N"', number).encode(),
              json.dumps({**good, "truncatedAlerts": "N"}).replace('"N"', number).encode()]
    for body in bodies:
        status, answer = await post_alerts(http, daemon, body)
        assert (status, answer["error"]) == (400, "malformed_json")
    body = event().replace(b'"status"', f'"n": {number}, "status"'.encode())
    status, answer = await send(http, daemon, body, signed(body))
    assert (status, answer["error"]) == (400, "malformed_json")
    assert exchange.state.calls == [] and await log_kinds(database) == []


@pytest.mark.parametrize("count", [2**31, 2**63, 10**39])
async def test_truncated_alerts_past_the_column_is_a_400(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    database: str, count: int,
) -> None:
    """truncatedAlerts past int32 (the column) is an invalid field, not a 500."""
    daemon = await make_daemon()
    status, answer = await post_alerts(http, daemon, _am(truncatedAlerts=count))
    assert (status, answer["error"]) == (400, "invalid_field")
    assert "truncatedAlerts" in answer["message"]
    status, _ = await post_alerts(http, daemon, _am(truncatedAlerts=2**31 - 1))
    assert status == 200


async def test_a_reused_fingerprint_with_other_labels_is_a_new_alert(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
) -> None:
    """Same fingerprint and startsAt, another symbol: recorded as new and contained, while
    a true re-delivery (same labels) is still absorbed."""
    daemon = await make_daemon(event_sources=SOURCES)
    first = event("evt-1", fingerprint="f00d")
    other = json.loads(event("evt-2", fingerprint="f00d"))
    other["labels"]["symbol"] = "ETH-USD"
    second = json.dumps(other).encode()
    again = event("evt-3", fingerprint="f00d")
    answers = [await send(http, daemon, body, signed(body)) for body in (first, second, again)]
    assert [(s, a["recorded"], a["redelivered"]) for s, a in answers] == [
        (200, 1, 0), (200, 1, 0), (200, 0, 1)]
    await idle(daemon)
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY", "ETH-USD": "CANCEL_ONLY"}


async def test_data_the_store_refuses_is_a_400_not_a_500(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch, database: str,
) -> None:
    """Past validation, an integer its column cannot hold (the store's DataError) is
    answered 400 unstorable: the class of defect 11 closed at the store boundary too."""
    parse = alertmanager.parse_payload

    def unchecked(body: bytes) -> list[Alert]:
        return [dataclasses.replace(a, truncated_alerts=2**31) for a in parse(body)]

    monkeypatch.setattr(webhook, "parse_payload", unchecked)
    daemon = await make_daemon()
    status, answer = await post_alerts(http, daemon, _am())
    assert (status, answer["error"]) == (400, "unstorable")
    assert exchange.state.calls == [] and await log_kinds(database) == []
