"""Hostile input found by review: deep nesting, Unicode digits, ids past int64, years past
9999. Each gets a 4xx (or a dead letter), never a 500 or a dead task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from responder.intake.alertmanager import PayloadError
from responder.intake.kafka import parse_message
from responder.intake.samples import parse_samples
from responder.jsontext import JSONTextError, loads
from tests.conftest import (
    VIEWER_TOKEN,
    WEBHOOK_TOKEN,
    DaemonFactory,
    Exchange,
    log_kinds,
    url,
    wait_for,
)
from tests.test_events import SOURCES, send, signed
from tests.webpage import Browser

NESTED = b"[" * 5000 + b"]" * 5000
NESTED_OBJECT = b'{"a":' * 40 + b"1" + b"}" * 40  # parses, but deeper than any payload


def test_deep_json_is_refused_not_recursed() -> None:
    for body in (NESTED, NESTED_OBJECT):
        with pytest.raises(JSONTextError):
            loads(body)
        with pytest.raises(PayloadError):
            parse_message(body, 1 << 20)
    with pytest.raises(PayloadError):
        parse_samples(NESTED, 1 << 20)
    assert loads(b'{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}


@pytest.mark.parametrize("body", [NESTED, NESTED_OBJECT])
async def test_webhooks_refuse_deep_json(make_daemon: DaemonFactory, exchange: Exchange,
                                         http: aiohttp.ClientSession, database: str,
                                         body: bytes) -> None:
    daemon = await make_daemon(event_sources=SOURCES)
    async with http.post(url(daemon, "/webhooks/alertmanager"), data=body,
                         headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}) as resp:
        assert resp.status == 400
    status, answer = await send(http, daemon, body, signed(body))
    assert (status, answer["error"]) == (400, "malformed_json")
    assert exchange.state.calls == [] and await log_kinds(database) == []


async def test_a_unicode_digit_timestamp_is_a_bad_timestamp(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession,
) -> None:
    daemon = await make_daemon(event_sources=SOURCES)
    headers = {**signed(b"{}"), "X-Responder-Timestamp": "\u00b2"}
    async with http.post(url(daemon, "/webhooks/events"), data=b"{}",
                         headers={k: v.encode().decode("latin-1") for k, v in
                                  headers.items()}) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "bad_timestamp"


@pytest.mark.parametrize("path", [
    "/v1/incidents/%C2%B2", "/v1/incidents/99999999999999999999",
    "/v1/incidents/1/evidence?version=%C2%B2", "/v1/incidents/1/evidence?version=99999999999",
    "/v1/actions?since=0001-01-01T00:00:00%2B01:00",
    "/v1/actions?until=9999-12-31T23:59:59-01:00", "/v1/actions?after=%C2%B2",
])
async def test_api_refuses_unusable_numbers_and_times(make_daemon: DaemonFactory,
                                                      http: aiohttp.ClientSession,
                                                      path: str) -> None:
    daemon = await make_daemon()
    async with http.get(url(daemon, path),
                        headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}) as resp:
        assert resp.status == 400, await resp.text()


@pytest.fixture
async def viewer(make_daemon: DaemonFactory) -> AsyncIterator[Browser]:
    daemon = await make_daemon()
    b = Browser(daemon)
    await b.login(VIEWER_TOKEN)
    yield b
    await b.close()


@pytest.mark.parametrize("path", [
    "/incidents/%C2%B2", "/actions?before=%C2%B2", "/incidents/99999999999999999999",
    "/actions?since=0001-01-01T00:00:00%2B01:00", "/actions?until=9999-12-31T23:59:59-01:00",
])
async def test_page_refuses_unusable_numbers_and_times(viewer: Browser, path: str) -> None:
    status, _ = await viewer.get(path)
    assert status == 400


async def test_a_dead_background_task_is_logged_counted_and_not_ready(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession,
) -> None:
    daemon = await make_daemon()

    async def broken() -> None:
        raise RuntimeError("a bug")

    daemon._spawn(broken(), "broken-worker")
    await asyncio.sleep(0)

    async def not_ready() -> bool:
        async with http.get(url(daemon, "/readyz")) as resp:
            return resp.status == 503 and (await resp.json())["dead_tasks"] == ["broken-worker"]

    await wait_for(not_ready, what="readyz to report the dead task")
    assert daemon.metrics.task_failures.labels("broken-worker")._value.get() == 1
