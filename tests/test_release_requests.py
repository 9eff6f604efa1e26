"""A two-person release request releases only the containment it was made for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import (
    OPERATOR_TOKEN,
    SECOND_OPERATOR_TOKEN,
    DaemonFactory,
    Exchange,
    idle,
    post_alerts,
    query,
)
from tests.test_controls import SPLIT_BRAIN, call, release_body, two_person

RELEASE = "/v1/controls/symbol-mode/BTC-USD/release"
SPLIT_BRAIN_AGAIN = SPLIT_BRAIN.replace(b"5b11d7a0c0ffee01", b"5b11d7a0c0ffee02")


def approve(request_id: int) -> str:
    return f"/v1/release-requests/{request_id}/approve"


async def ended(dsn: str) -> list[dict[str, Any]]:
    rows = await query(dsn, "SELECT body FROM action_log WHERE kind = 'release_request_ended'"
                            " ORDER BY seq")
    return [json.loads(r["body"])["detail"] for r in rows]


async def test_an_old_request_does_not_release_a_new_containment(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    rules_dir: Path, database: str,
) -> None:
    """Requests #1 and #2 of one key; #2 approved; the key contained again: approving #1 is
    refused (the release of #2 ended it, recorded) and the new containment holds."""
    two_person(rules_dir)
    daemon = await make_daemon()
    await post_alerts(http, daemon, SPLIT_BRAIN)
    await idle(daemon)
    _, first = await call(http, daemon, "POST", RELEASE, OPERATOR_TOKEN,
                          release_body("CANCEL_ONLY", "INC-1"))
    _, second = await call(http, daemon, "POST", RELEASE, OPERATOR_TOKEN,
                           release_body("CANCEL_ONLY", "INC-2"))
    assert first["containment"] == second["containment"] is not None
    status, _ = await call(http, daemon, "POST", approve(second["request_id"]),
                           SECOND_OPERATOR_TOKEN)
    assert status == 200
    assert exchange.state.symbols["BTC-USD"] == "CANCEL_ONLY"
    assert [(e["request_id"], e["why"]) for e in await ended(database)] == [
        (first["request_id"], "released")]

    await post_alerts(http, daemon, SPLIT_BRAIN_AGAIN)
    await idle(daemon)
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"
    status, refused = await call(http, daemon, "POST", approve(first["request_id"]),
                                 SECOND_OPERATOR_TOKEN)
    assert (status, refused["error"]) == (409, "not_pending")
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"


async def test_a_new_containment_ends_pending_requests_and_approvals_name_it(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    rules_dir: Path, database: str,
) -> None:
    """A rule raising the key ends the request made before (recorded); and were such a
    request still pending, its approval would be refused: it names another containment."""
    two_person(rules_dir)
    daemon = await make_daemon()
    await post_alerts(http, daemon, SPLIT_BRAIN)
    await idle(daemon)
    _, old = await call(http, daemon, "POST", RELEASE, OPERATOR_TOKEN,
                        release_body("CANCEL_ONLY"))
    _, done = await call(http, daemon, "POST", RELEASE, OPERATOR_TOKEN,
                         release_body("CANCEL_ONLY"))
    await call(http, daemon, "POST", approve(done["request_id"]), SECOND_OPERATOR_TOKEN)
    _, stale = await call(http, daemon, "POST", RELEASE, OPERATOR_TOKEN, release_body("NORMAL"))
    await post_alerts(http, daemon, SPLIT_BRAIN_AGAIN)
    await idle(daemon)
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"
    assert [(e["request_id"], e["why"]) for e in await ended(database)][-1] == (
        stale["request_id"], "contained again")
    [held] = await query(database, "SELECT containment FROM control_levels"
                                   " WHERE control = 'symbol-mode' AND key = 'BTC-USD'")
    assert held["containment"] != old["containment"]

    # The containment check alone: put the first request back to pending, from HARD_HALT.
    await query(database, "UPDATE release_requests SET status = 'pending' WHERE id = $1",
                old["request_id"])
    status, refused = await call(http, daemon, "POST", approve(old["request_id"]),
                                 SECOND_OPERATOR_TOKEN)
    assert (status, refused["error"]) == (409, "stale_request")
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"
