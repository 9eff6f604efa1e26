"""Every change to an incident reaches its bundle: a resolved alert seals a new version."""

from __future__ import annotations

import json

import aiohttp

from tests.conftest import DaemonFactory, fixture_bytes, idle, post_alerts, query, wait_for


async def latest_bundle(dsn: str) -> dict[str, object] | None:
    rows = await query(dsn, "SELECT body FROM evidence WHERE incident_id = 1"
                            " ORDER BY version DESC LIMIT 1")
    return json.loads(rows[0]["body"]) if rows else None


async def test_resolving_an_incident_seals_it_again(make_daemon: DaemonFactory,
                                                    http: aiohttp.ClientSession,
                                                    database: str) -> None:
    """When the alert resolves, a new version says resolved and holds alert_resolved."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)

    async def sealed_contained() -> bool:
        bundle = await latest_bundle(database)
        return bundle is not None and bool(bundle["controls"])

    await wait_for(sealed_contained, what="evidence of the containment sealed")
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
