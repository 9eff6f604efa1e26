"""Every change to an incident reaches its bundle: a resolved alert seals a new version."""

from __future__ import annotations

import json

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.exchange import Faults
from responder.daemon import Daemon
from responder.store.actionlog import ChainAppender, Entry, Head
from responder.tlog.merkle import Frontier
from tests.conftest import (
    OPERATOR_TOKEN,
    DaemonFactory,
    Exchange,
    fixture_bytes,
    idle,
    post_alerts,
    query,
    url,
    wait_for,
)


async def latest_bundle(dsn: str) -> dict[str, object] | None:
    rows = await query(dsn, "SELECT body FROM evidence WHERE incident_id = 1"
                            " ORDER BY version DESC LIMIT 1")
    return json.loads(rows[0]["body"]) if rows else None


async def contained_and_sealed(daemon: Daemon, database: str) -> None:
    await idle(daemon)

    async def sealed_contained() -> bool:
        bundle = await latest_bundle(database)
        return bundle is not None and bool(bundle["controls"])

    await wait_for(sealed_contained, what="evidence of the containment sealed")


async def test_resolving_an_incident_seals_it_again(make_daemon: DaemonFactory,
                                                    http: aiohttp.ClientSession,
                                                    database: str) -> None:
    """When the alert resolves, a new version says resolved and holds alert_resolved."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await contained_and_sealed(daemon, database)
    await post_alerts(http, daemon, fixture_bytes("resolved-single.json"))

    async def sealed_resolved() -> bool:
        bundle = await latest_bundle(database)
        assert bundle is not None
        incident = bundle["incident"]
        assert isinstance(incident, dict)
        return bool(incident["status"] == "resolved")

    await wait_for(sealed_resolved, what="a version sealed with the incident resolved")
    bundle = await latest_bundle(database)
    assert bundle is not None
    actions = bundle["actions"]
    assert isinstance(actions, list)
    resolved = [a for a in actions if a["kind"] == "alert_resolved"]
    assert [a["detail"]["note"] for a in resolved] == ["resolved, containment held"]


async def test_a_refused_release_reaches_the_bundle(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    exchange: Exchange,
) -> None:
    """A release the target refused is a change too: a new version holds release_failed."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await contained_and_sealed(daemon, database)
    exchange.state.faults = Faults(fail_next=1, fail_status=409)
    async with http.post(url(daemon, "/v1/controls/symbol-mode/BTC-USD/release"),
                         json={"to_level": "NORMAL", "reason": "reconciled",
                               "ticket": "INC-1"},
                         headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as resp:
        assert resp.status == 502

    async def sealed_refusal() -> bool:
        bundle = await latest_bundle(database)
        actions = bundle["actions"] if bundle is not None else []
        assert isinstance(actions, list)
        return any(a["kind"] == "release_failed" for a in actions)

    await wait_for(sealed_refusal, what="a version holding the refused release")


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(st.tuples(
    st.sampled_from(["alert_resolved", "incident_closed", "release_failed", "drift_detected",
                     "release_requested", "outcome", "evidence_sealed", "mode_changed"]),
    st.one_of(st.none(), st.integers(min_value=1, max_value=5))), max_size=20))
def test_every_record_of_an_incident_reaches_its_evidence(
        entries: list[tuple[str, int | None]]) -> None:
    """Whatever records a commit holds, the sealer is told of each incident they name (a
    seal's own record excepted, or sealing would never settle)."""
    head = Head(0, "0" * 64, Frontier())
    chain = ChainAppender(None, "h", head)  # type: ignore[arg-type]  # add() needs no connection
    chain.add(*(Entry(kind, incident_id=incident) for kind, incident in entries))
    assert chain.incidents == {i for k, i in entries if i is not None and k != "evidence_sealed"}
