"""Generated input at every intake boundary of a real daemon: HTTP bodies, header bytes,
encodings and sizes at each webhook and the auth path of /v1, and messages on both Kafka
topics of a real broker. Never a 5xx, never a stuck consumer, never an admin call outside
the declared templates, nothing from a token in any log line.

Bounded (max_examples) and derandomized, so CI runs the same inputs every time."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import json
import logging
import re
import shutil
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples.exchange import ExchangeState
from responder.daemon import Daemon
from responder.logging import configure_logging
from tests.conftest import (
    ADMIN_TOKEN,
    EXCHANGE_TOKEN,
    OPERATOR_TOKEN,
    ROOT,
    VIEWER_TOKEN,
    WEBHOOK_TOKEN,
    _start_tansu,
    fixture_bytes,
    free_port,
    plain_test_logging,
)
from tests.live_stack import Loop, start_stack
from tests.rawhttp import Answer, raw_request
from tests.test_kafka_metrics import batch as samples_batch

SECRET = "fuzz-event-secret-0123456789"
TOKENS = [WEBHOOK_TOKEN, "rotated-webhook-token-2", VIEWER_TOKEN, OPERATOR_TOKEN, ADMIN_TOKEN,
          EXCHANGE_TOKEN, SECRET]
MAX_BODY = 32_768
# The daemon, in its own thread, draws jitter from `random` while hypothesis generates; that
# is not the strategies using it.
pytestmark = pytest.mark.filterwarnings(
    "ignore::hypothesis.errors.HypothesisDeprecationWarning")
FUZZ = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


@dataclass
class Rig:
    """A daemon with Kafka, its exchange and its captured log, driven from a thread loop."""

    loop: Loop
    daemon: Daemon
    exchange: ExchangeState
    log: io.StringIO
    bootstrap: str
    topics: dict[str, str]
    templates: list[re.Pattern[str]]
    count: int = 0

    def run(self, coro: Any, timeout_s: float = 60) -> Any:
        return self.loop.run(coro, timeout_s)

    def request(self, method: str, path: str, headers: list[tuple[bytes, bytes]],
                body: bytes) -> Answer:
        answer: Answer = self.run(raw_request(self.daemon.port, method, path, headers, body))
        return answer

    def fresh_symbol(self) -> str:
        self.count += 1
        return f"FZ{self.count:04d}-USD"


def _templates(daemon: Daemon) -> list[re.Pattern[str]]:
    """The admin paths the rules declare, as patterns: a key is one path segment."""
    assert daemon.state is not None
    paths = []
    for control in daemon.state.rules.controls.values():
        for path in (control.path, control.read_path):
            if path is not None:
                paths.append(re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[^/.][^/]*",
                                               re.escape(path)) + "$"))
    return paths


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    loop = Loop()
    tmp = tmp_path_factory.mktemp("fuzz")
    rules = tmp / "rules"
    shutil.copytree(ROOT / "rules", rules)
    exchange_port, kafka_port = free_port(), free_port()
    broker = _start_tansu(kafka_port)
    mp = pytest.MonkeyPatch()
    mp.setenv("RESPONDER_EXCHANGE_URL", f"http://127.0.0.1:{exchange_port}")
    mp.setenv("RESPONDER_EXCHANGE_TOKEN", EXCHANGE_TOKEN)
    suffix = uuid.uuid4().hex[:8]
    topics = {"alerts": f"alerts-{suffix}", "metrics": f"metrics-{suffix}"}
    database = f"responder_fuzz_{suffix}"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    log = io.StringIO()
    try:
        stack = loop.run(start_stack(
            database, rules, exchange_port, data_dir=tmp / "data", max_body_bytes=MAX_BODY,
            event_sources=[{"name": "edge", "secrets": [SECRET]}],
            kafka_bootstrap=f"127.0.0.1:{kafka_port}", kafka_alerts_topic=topics["alerts"],
            kafka_dlq_topic=f"dlq-{suffix}", kafka_group=f"g-{suffix}",
            kafka_metrics_topic=topics["metrics"], kafka_metrics_dlq_topic=f"mdlq-{suffix}",
            kafka_max_message_bytes=MAX_BODY))
        configure_logging(stack.daemon.redactor, "info", log)
        yield Rig(loop, stack.daemon, stack.exchange, log, f"127.0.0.1:{kafka_port}", topics,
                  _templates(stack.daemon))
        loop.run(stack.stop())
    finally:
        plain_test_logging()
        root.handlers[:] = handlers
        root.setLevel(level)
        loop.close()
        broker.terminate()
        broker.wait(10)
        mp.undo()


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _alert(symbol: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(fixture_bytes("firing-single.json"))
    payload["alerts"][0]["labels"]["symbol"] = symbol
    payload["alerts"][0]["fingerprint"] = hashlib.sha256(symbol.encode()).hexdigest()[:16]
    return payload


def _still_contains(rig: Rig) -> None:
    """A good alert sent now, over HTTP and on Kafka, is contained within seconds."""
    http_symbol, kafka_symbol = rig.fresh_symbol(), rig.fresh_symbol()
    body = json.dumps(_alert(http_symbol)).encode()
    answer = rig.request("POST", "/webhooks/alertmanager",
                         [(b"Authorization", f"Bearer {WEBHOOK_TOKEN}".encode())], body)
    assert answer.status == 200, answer
    rig.run(_produce(rig.bootstrap, rig.topics["alerts"],
                     [json.dumps(_alert(kafka_symbol)).encode()]))
    t0 = time.time() - 600
    rig.run(_produce(rig.bootstrap, rig.topics["metrics"],
                     [samples_batch(t0, [(0, 150), (15, 150), (30, 150)], venue="after-fuzz")]))
    for symbol in (http_symbol, kafka_symbol):
        _wait(lambda s=symbol: rig.exchange.symbols.get(s) == "CANCEL_ONLY", 30,
              f"containment of {symbol}")
    _wait(lambda: rig.exchange.global_mode == "SOFT_HALT", 30,
          "the soft halt from samples on the metrics topic")
    assert rig.daemon.state is not None and rig.daemon.state.stalled == {}


def _clean(rig: Rig) -> None:
    """No admin call outside the declared templates; no token in any log line."""
    for call in rig.exchange.calls:
        assert any(t.match(call.path) for t in rig.templates), call
    text = rig.log.getvalue()
    for token in TOKENS:
        assert token not in text, f"a token is in the log: ...{token[:6]}"


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * MAX_BODY)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


# Values: JSON of every kind, with the numbers, text and nesting that broke things before.
HUGE = "__huge__"  # becomes an integer of 5,000 digits, past what Python will print
huge_ints = st.integers(min_value=40, max_value=4000).map(lambda n: int("9" * n))
scalars = (st.none() | st.booleans() | st.integers() | huge_ints | st.floats()
           | st.text() | st.sampled_from(["\x00", "\ud800", "..", "firing", "4", "", HUGE]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                           max_leaves=20)


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")
    return text.replace(f'"{HUGE}"'.encode(), b"9" * 5000)


@st.composite
def mutated_payload(draw: st.DrawFn) -> bytes:
    """A real Alertmanager payload with one field (anywhere) replaced by any JSON value."""
    payload = _alert(draw(st.sampled_from(["BTC-USD", "ETH-USD", "..", "A/B", "x" * 40])))
    alert = payload["alerts"][0]
    where = draw(st.sampled_from(["top", "alert", "labels"]))
    target = {"top": payload, "alert": alert, "labels": alert["labels"]}[where]
    key = draw(st.sampled_from([*target.keys(), "truncatedAlerts", "extra"]))
    target[key] = draw(json_values)
    return _dumps(payload)


@st.composite
def mutated_event(draw: st.DrawFn) -> bytes:
    event: dict[str, Any] = {"event_id": draw(st.text(max_size=20)), "status": "firing",
                             "labels": {"alertname": "SplitBrainSuspected", "severity": "sev1",
                                        "symbol": "SOL-USD"},
                             "starts_at": "2026-11-23T06:00:00Z"}
    key = draw(st.sampled_from([*event.keys(), "fingerprint", "annotations", "ends_at"]))
    event[key] = draw(json_values)
    return _dumps(event)


bodies = (mutated_payload() | json_values.map(_dumps) | st.binary(max_size=2048)
          | st.integers(0, 2 * MAX_BODY).map(lambda n: b" " * n + b"{}"))
header_bytes = st.binary(max_size=64).filter(lambda b: b"\r" not in b and b"\n" not in b)
header_names = st.sampled_from([b"X-Custom", b"Content-Type", b"X-Request-Id",
                                b"X-Responder-Correlation-Id", b"Accept-Encoding", b"Cookie"])


@st.composite
def requests(draw: st.DrawFn, signed: bool) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body: the auth right or wrong, an encoding true or false, extra bytes."""
    body = draw(mutated_event() if signed and draw(st.booleans()) else bodies)
    headers: list[tuple[bytes, bytes]] = []
    # Weighted to the good credentials, so most bodies reach the parser.
    auth = draw(st.sampled_from(["good"] * 4 + ["bytes", "none", "token-elsewhere"]))
    if signed:
        stamp = str(int(time.time())).encode()
        if auth == "good":
            digest = hmac.new(SECRET.encode(), stamp + b"." + body, hashlib.sha256).hexdigest()
            headers += [(b"X-Responder-Source", b"edge"), (b"X-Responder-Timestamp", stamp),
                        (b"X-Responder-Signature", b"sha256=" + digest.encode())]
        elif auth == "bytes":
            headers += [(b"X-Responder-Source", draw(header_bytes)),
                        (b"X-Responder-Timestamp", draw(header_bytes)),
                        (b"X-Responder-Signature", draw(header_bytes))]
    elif auth == "good":
        headers.append((b"Authorization", f"Bearer {WEBHOOK_TOKEN}".encode()))
    elif auth == "bytes":
        headers.append((b"Authorization", b"Bearer " + draw(header_bytes)))
    if auth == "token-elsewhere":  # a token where no one expects it, even over-long
        token = draw(st.sampled_from(TOKENS)).encode()
        headers.append((draw(header_names), token + b"p" * draw(st.sampled_from([0, 9000]))))
    encoding = draw(st.sampled_from(["none"] * 4 + ["gzip", "deflate", "false-gzip", "bytes"]))
    if encoding == "gzip":
        body, value = gzip.compress(body), b"gzip"
    elif encoding == "deflate":
        body, value = zlib.compress(body), b"deflate"
    elif encoding == "false-gzip":
        value = b"gzip"
    elif encoding == "bytes":
        value = draw(header_bytes)
    if encoding != "none":
        headers.append((b"Content-Encoding", value))
    for _ in range(draw(st.integers(0, 2))):
        headers.append((draw(header_names), draw(header_bytes)))
    return headers, body


def _never_5xx(answer: Answer, where: str) -> None:
    assert answer.status < 500, (where, answer)


@settings(FUZZ, max_examples=120)
@given(request=requests(signed=False))
def test_alertmanager_webhook_never_5xx(rig: Rig,
                                        request: tuple[list[tuple[bytes, bytes]], bytes]) -> None:
    """Any headers, encoding and body at /webhooks/alertmanager: an answer below 500."""
    headers, body = request
    _never_5xx(rig.request("POST", "/webhooks/alertmanager", headers, body), "alertmanager")


@settings(FUZZ, max_examples=120)
@given(request=requests(signed=True))
def test_signed_events_never_5xx(rig: Rig,
                                 request: tuple[list[tuple[bytes, bytes]], bytes]) -> None:
    """Any signature headers (good or bytes), encoding and body at /webhooks/events."""
    headers, body = request
    _never_5xx(rig.request("POST", "/webhooks/events", headers, body), "events")


V1 = [("GET", "/v1/actions"), ("GET", "/v1/controls"), ("GET", "/v1/mode"),
      ("POST", "/v1/mode"), ("POST", "/v1/break-glass"), ("DELETE", "/v1/break-glass"),
      ("GET", "/v1/release-requests"), ("POST", "/v1/controls/symbol-mode/BTC-USD/release"),
      ("POST", "/v1/controls/symbol-mode/BTC-USD/contain"), ("GET", "/v1/incidents/1"),
      ("POST", "/v1/release-requests/1/approve")]


@FUZZ
@given(route=st.sampled_from(V1), authorization=header_bytes,
       scheme=st.sampled_from([b"Bearer ", b"bearer ", b"Basic ", b""]),
       extra=st.lists(st.tuples(header_names, header_bytes), max_size=2))
def test_v1_auth_path_never_5xx(rig: Rig, route: tuple[str, str], authorization: bytes,
                                scheme: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    """Any Authorization bytes on every /v1 route: 401 with a Bearer challenge (or the
    HTTP parser's own 400 for a control character in a header)."""
    method, path = route
    answer = rig.request(method, path, [(b"Authorization", scheme + authorization), *extra],
                         b"{}")
    assert answer.status in (400, 401), (route, answer)
    if answer.status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer ")


kafka_messages = (mutated_payload() | mutated_event() | json_values.map(_dumps)
                  | st.binary(max_size=1024))
samples = st.fixed_dictionaries({"name": st.sampled_from(["settlement_lag_p99", "x"]),
                                 "labels": st.dictionaries(st.text(max_size=8), json_values,
                                                           max_size=3),
                                 "value": json_values, "ts": json_values})
sample_messages = (samples.map(_dumps) | st.lists(samples, max_size=3).map(_dumps)
                   | json_values.map(_dumps) | st.binary(max_size=512))


@settings(FUZZ, max_examples=25)
@given(alerts=st.lists(kafka_messages, min_size=1, max_size=8),
       metrics=st.lists(sample_messages, min_size=1, max_size=8))
def test_kafka_topics_never_stall(rig: Rig, alerts: list[bytes], metrics: list[bytes]) -> None:
    """Any messages on the alerts and metrics topics: neither consumer stalls."""
    rig.run(_produce(rig.bootstrap, rig.topics["alerts"], alerts))
    rig.run(_produce(rig.bootstrap, rig.topics["metrics"], metrics))
    assert rig.daemon.state is not None
    assert not rig.daemon.state.dead_tasks


def test_after_the_fuzz_the_daemon_still_contains_and_nothing_leaked(rig: Rig) -> None:
    """Runs last: good alerts on HTTP and Kafka are contained within seconds, every admin
    call the generated input caused is of a declared template, and no token was logged."""
    _still_contains(rig)
    _clean(rig)
