"""An ordinary sink outage loses nothing: deliveries retry for hours, and a row given up on is
said through every other channel and can be sent again with `responder outbox retry`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from responder.cli import main
from responder.config import SinkSpec
from responder.evidence.outbox import backoff_s, gives_up
from tests.conftest import DaemonFactory, fixture_bytes, idle, post_alerts, query, wait_for
from tests.test_outbox import Receiver, all_delivered, outbox, serve
from tests.test_pages import SEALED_ALL_SQL


@pytest.fixture
async def down_sink() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver(fail_first=10**9)
    url, runner = await serve(receiver)
    yield receiver, url
    await runner.cleanup()


async def test_a_long_outage_keeps_retrying(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    down_sink: tuple[Receiver, str],
) -> None:
    """Past the old eight attempts a delivery is still pending, and lands once the sink is up."""
    receiver, url = down_sink
    daemon = await make_daemon(sinks=[{"name": "hook", "kind": "webhook", "url": url,
                                       "max_backoff_s": 0.2}])
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)

    async def failed_many_times() -> bool:
        rows = await outbox(database)
        return bool(rows) and all(r["attempts"] >= 12 for r in rows)

    await wait_for(failed_many_times, timeout_s=60, what="a dozen failed attempts")
    assert {r["status"] for r in await outbox(database)} == {"pending"}
    receiver.fail_first = 0
    await wait_for(lambda: all_delivered(database), timeout_s=30, what="delivery after it")


async def test_a_dead_row_is_said_and_sent_again(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    down_sink: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given up after retry_for_s: an error log and the dead gauge; `outbox retry` re-drives."""
    receiver, url = down_sink
    with capture_logs() as logs:
        daemon = await make_daemon(sinks=[{"name": "hook", "kind": "webhook", "url": url,
                                           "retry_for_s": 0.3, "max_backoff_s": 0.1}])
        await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
        await idle(daemon)

        async def all_dead() -> bool:
            [sealed] = await query(database, SEALED_ALL_SQL)  # no version still to come
            rows = await outbox(database)
            return (bool(sealed["sealed"]) and bool(rows)
                    and all(r["status"] == "dead" for r in rows))

        await wait_for(all_dead, timeout_s=30, what="the deliveries given up on")
    dead = len(await outbox(database))
    assert any(e["log_level"] == "error" and e["event"].startswith("delivery dead")
               for e in logs)
    gauge = daemon.metrics.outbox_dead.labels("hook")
    await wait_for(lambda: gauge._value.get() == dead, what="the dead gauge")
    receiver.fail_first = 0
    monkeypatch.setenv("RESPONDER_DATABASE_URL", database)
    assert await asyncio.to_thread(main, ["outbox", "retry", "--sink", "hook"]) == 0
    await wait_for(lambda: all_delivered(database), timeout_s=30, what="the re-driven rows")
    await wait_for(lambda: gauge._value.get() == 0, what="the dead gauge back to 0")
    rows = await query(database, "SELECT retry_since FROM outbox")
    assert all(r["retry_since"] is not None for r in rows)
    assert len({k for k, _, _ in receiver.accepted}) == dead


def test_backoff_is_capped_and_the_window_is_long_by_default() -> None:
    """Defaults: retry for a day, never more than five minutes apart, no attempt cap."""
    spec = SinkSpec(name="s", kind="file", dir="x")
    assert spec.retry_for_s >= 3600 and spec.max_attempts is None
    assert [backoff_s(spec, n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert backoff_s(spec, 10_000) == spec.max_backoff_s == 300.0
    assert not gives_up(spec, 10_000, 3600.0)
    assert gives_up(spec, 1, spec.retry_for_s)


@settings(max_examples=200, deadline=None)
@given(outage_s=st.floats(min_value=0, max_value=50_000),
       retry_for_s=st.floats(min_value=1, max_value=100_000),
       max_backoff_s=st.floats(min_value=5, max_value=3_600))
def test_an_outage_shorter_than_the_window_loses_nothing(
        outage_s: float, retry_for_s: float, max_backoff_s: float) -> None:
    """A sink down for less than retry_for_s: delivered within max_backoff_s of coming back;
    down for longer: given up only once the window has passed."""
    spec = SinkSpec(name="s", kind="file", dir="x", retry_for_s=retry_for_s,
                    max_backoff_s=max_backoff_s)
    t, attempts = 0.0, 0
    while t < outage_s:  # every attempt during the outage fails
        attempts += 1
        if gives_up(spec, attempts, t):
            assert t >= retry_for_s and outage_s > retry_for_s
            return
        wait = backoff_s(spec, attempts)
        assert 0 < wait <= max_backoff_s
        t += wait
    assert t <= outage_s + max_backoff_s
