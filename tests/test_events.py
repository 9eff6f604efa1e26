"""The signed generic webhook: HMAC over timestamp and body, a time window, no replays."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp
import pytest

from responder.daemon import Daemon
from tests.conftest import DaemonFactory, Exchange, idle, log_kinds, url

SOURCES = [{"name": "edge", "secrets": ["edge-secret-old-1234", "edge-secret-new-5678"]}]


def event(event_id: str = "evt-1", **changes: Any) -> bytes:
    body = {"event_id": event_id, "status": "firing",
            "labels": {"alertname": "LedgerInvariantViolation", "severity": "sev1",
                       "symbol": "BTC-USD"},
            "annotations": {"summary": "replay guard down"},
            "starts_at": "2026-11-23T05:32:58.043380198Z", **changes}
    return json.dumps(body).encode()


def signed(body: bytes, secret: str = "edge-secret-new-5678",
           timestamp: int | None = None, source: str = "edge") -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Responder-Source": source, "X-Responder-Timestamp": ts,
            "X-Responder-Signature": f"sha256={digest}"}


async def send(http: aiohttp.ClientSession, daemon: Daemon, body: bytes,
               headers: dict[str, str]) -> tuple[int, Any]:
    async with http.post(url(daemon, "/webhooks/events"), data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_signed_event_is_contained(make_daemon: DaemonFactory, exchange: Exchange,
                                         http: aiohttp.ClientSession) -> None:
    """A correctly signed event flows through the same rules and containment."""
    daemon = await make_daemon(event_sources=SOURCES)
    status, body = await send(http, daemon, event(), signed(event()))
    assert (status, body["recorded"]) == (200, 1)
    await idle(daemon)
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY"}


async def test_previous_secret_still_accepted(make_daemon: DaemonFactory,
                                              http: aiohttp.ClientSession) -> None:
    """Several secrets per source are accepted, so they can be rotated."""
    daemon = await make_daemon(event_sources=SOURCES)
    status, _ = await send(http, daemon, event(), signed(event(), "edge-secret-old-1234"))
    assert status == 200


@pytest.mark.parametrize(("case", "code", "reason"), [
    ("bad signature", 401, "bad_signature"),
    ("stale timestamp", 401, "stale_timestamp"),
    ("future timestamp", 401, "stale_timestamp"),
    ("unknown source", 401, "unknown_source"),
    ("no headers", 401, "missing_signature"),
    ("bad body", 400, "invalid_field"),
])
async def test_refusals_take_no_action(make_daemon: DaemonFactory, exchange: Exchange,
                                       http: aiohttp.ClientSession, database: str, case: str,
                                       code: int, reason: str) -> None:
    """Every signature failure is a 401 with a reason code, counted, recording nothing."""
    daemon = await make_daemon(event_sources=SOURCES)
    body = event()
    headers = signed(body)
    if case == "bad signature":
        headers = signed(body, "not-the-secret")
    elif case == "stale timestamp":
        headers = signed(body, timestamp=int(time.time()) - 3600)
    elif case == "future timestamp":
        headers = signed(body, timestamp=int(time.time()) + 3600)
    elif case == "unknown source":
        headers = signed(body, source="nobody")
    elif case == "no headers":
        headers = {}
    elif case == "bad body":
        body = event(status="exploded")
        headers = signed(body)
    status, answer = await send(http, daemon, body, headers)
    assert (status, answer["error"]) == (code, reason)
    assert daemon.metrics.rejected.labels("events", reason)._value.get() == 1
    assert exchange.state.calls == []
    assert await log_kinds(database) == []


async def test_replayed_event_is_refused(make_daemon: DaemonFactory, exchange: Exchange,
                                         http: aiohttp.ClientSession) -> None:
    """The same event id again, even freshly signed, is a 409 and counted."""
    daemon = await make_daemon(event_sources=SOURCES)
    assert (await send(http, daemon, event(), signed(event())))[0] == 200
    await idle(daemon)
    calls = len(exchange.state.calls)
    status, answer = await send(http, daemon, event(), signed(event()))
    assert (status, answer["error"]) == (409, "replayed")
    assert daemon.metrics.rejected.labels("events", "replayed")._value.get() == 1
    assert len(exchange.state.calls) == calls
