"""Break-glass: the TTL is 1 to 86400 s, repeating the call extends it within a capped
total and is recorded, and its end always names what ended."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from responder.api.bodies import BodyRefused, BreakGlassStart, validate
from responder.daemon import Daemon
from responder.engine.modes import MAX_BREAK_GLASS_S, MAX_BREAK_GLASS_TOTAL_S
from tests.conftest import ADMIN_TOKEN, DaemonFactory, url, wait_for
from tests.test_modes import records


async def glass(http: aiohttp.ClientSession, daemon: Daemon, ttl: Any,
                reason: str = "exchange maintenance") -> tuple[int, Any]:
    async with http.post(url(daemon, "/v1/break-glass"), json={"ttl_s": ttl, "reason": reason},
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
        return resp.status, await resp.json()


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_ttl_outside_one_to_a_day_is_refused(ttl: float) -> None:
    """Any TTL below 1 s or above 86400 s is refused, naming ttl_s; any inside is taken."""
    body = {"ttl_s": ttl, "reason": "x"}
    if 1 <= ttl <= MAX_BREAK_GLASS_S:
        assert validate(BreakGlassStart, body).ttl_s == ttl
    else:
        with pytest.raises(BodyRefused, match=r"^ttl_s: "):
            validate(BreakGlassStart, body)


@pytest.mark.parametrize("ttl", [1e-9, 0, -5, 86400.001, True, "60", math.pi * 1e6])
async def test_a_daemon_refuses_an_odd_ttl(make_daemon: DaemonFactory,
                                           http: aiohttp.ClientSession, ttl: Any) -> None:
    """ttl_s 1e-9 (and its like) is a 400 and starts nothing."""
    daemon = await make_daemon()
    status, answer = await glass(http, daemon, ttl)
    assert (status, answer["error"]) == (400, "invalid_field")
    assert answer["message"].startswith("ttl_s")
    assert daemon.state is not None and not daemon.state.modes.policy().break_glass


async def test_repeating_the_call_extends_within_a_cap(make_daemon: DaemonFactory,
                                                      http: aiohttp.ClientSession,
                                                      database: str) -> None:
    """A second call while active extends it and is recorded as such; one that would take
    it past a day from its start is a 409, and the expiry stays where it was."""
    daemon = await make_daemon()
    assert daemon.state is not None
    assert (await glass(http, daemon, 3600))[0] == 200
    status, answer = await glass(http, daemon, 7200, "still on it")
    assert status == 200
    extended_until = datetime.fromisoformat(answer["break_glass"]["until"])
    assert answer["break_glass"]["reason"] == "still on it"
    status, refused = await glass(http, daemon, MAX_BREAK_GLASS_S)
    assert (status, refused["error"]) == (409, "break_glass_cap")
    assert daemon.state.modes.break_glass_until == extended_until
    assert daemon.metrics.rejected.labels("api", "break_glass_cap")._value.get() == 1
    [started] = await records(database, "break_glass_started")
    [extended] = await records(database, "break_glass_extended")
    assert extended["detail"]["from"] == started["detail"]["until"]
    assert extended["detail"]["until"] == extended_until.isoformat()
    assert (extended["detail"]["by"], extended["detail"]["reason"]) == ("ada", "still on it")
    since = datetime.fromisoformat(extended["detail"]["since"])
    assert since == datetime.fromisoformat(started["detail"]["until"]) - timedelta(seconds=3600)


async def test_extensions_never_pass_the_total(make_daemon: DaemonFactory,
                                               http: aiohttp.ClientSession,
                                               database: str) -> None:
    """However often it is repeated, break-glass ends within a day of its start."""
    daemon = await make_daemon()
    assert daemon.state is not None
    answers = [await glass(http, daemon, MAX_BREAK_GLASS_S // 4 * k) for k in (1, 2, 3, 4, 4)]
    assert [status for status, _ in answers] == [200, 200, 200, 409, 409]
    [started] = await records(database, "break_glass_started")
    begun = datetime.fromisoformat(started["detail"]["until"]) - timedelta(
        seconds=MAX_BREAK_GLASS_S // 4)
    until = daemon.state.modes.break_glass_until
    assert until is not None and until - begun <= timedelta(seconds=MAX_BREAK_GLASS_TOTAL_S)
    assert len(await records(database, "break_glass_extended")) == 2


async def test_an_expiry_names_what_ended(make_daemon: DaemonFactory,
                                          http: aiohttp.ClientSession, database: str) -> None:
    """The record of an expired break-glass has a reason and says whose break-glass ran out
    (it said reason: None)."""
    daemon = await make_daemon()
    assert (await glass(http, daemon, 1))[0] == 200

    async def ended() -> bool:
        return bool(await records(database, "break_glass_ended"))

    await wait_for(ended, timeout_s=15, what="break-glass to expire")
    [record] = await records(database, "break_glass_ended")
    detail = record["detail"]
    assert detail["how"] == "expired" and detail["reason"]
    assert (detail["started_by"], detail["started_reason"]) == ("ada", "exchange maintenance")


async def test_an_expiry_check_does_not_end_an_extended_break_glass(
        make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str) -> None:
    """The watcher's expiry, when it comes after an extension (on any replica), ends
    nothing."""
    daemon = await make_daemon()
    assert daemon.state is not None
    assert (await glass(http, daemon, 600))[0] == 200
    state = daemon.state
    assert await state.writer.submit(state.modes.end_break_glass("expired")) is False
    assert state.modes.policy().break_glass
    assert await records(database, "break_glass_ended") == []
