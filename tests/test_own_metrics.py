"""The metrics the dashboard and own alerts rely on are set: readiness, contained keys and
matches by rule."""

from __future__ import annotations

import aiohttp

from tests.conftest import DaemonFactory, Exchange, idle, post_alerts, url
from tests.test_engine import alert, payload


async def scrape(http: aiohttp.ClientSession, address: str) -> str:
    async with http.get(address) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_scrape_reports_readiness_contained_keys_and_matches(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession) -> None:
    """After one ledger alert the scrape shows ready, two contained keys and one match; when
    draining it shows not ready."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, payload(alert("LedgerInvariantViolation", "BTC-USD")))
    await idle(daemon)
    text = await scrape(http, url(daemon, "/metrics"))
    assert "responder_ready 1.0" in text
    assert 'responder_controls_contained{control="symbol-mode"} 1.0' in text
    assert 'responder_controls_contained{control="withdrawals"} 1.0' in text
    assert 'responder_controls_contained{control="global-mode"} 0.0' in text
    assert ('responder_rule_matches_total{action="contain",rule="ledger-invariant-violation"}'
            ' 1.0') in text
    assert daemon.state is not None
    daemon.state.is_draining = True
    assert "responder_ready 0.0" in await scrape(http, url(daemon, "/metrics"))
    daemon.state.is_draining = False
