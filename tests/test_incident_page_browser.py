"""The incident page in headless Chromium, for the incidents an on-call engineer meets:
it says what is held, why, and what to do next, at 1400 px and on a phone, and the
incident list shows a new incident without a reload.

Screenshots are kept under RESPONDER_TEST_ARTEFACTS (default tests/artefacts/).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.wait import WebDriverWait

from responder.daemon import Daemon
from tests.conftest import (
    ADMIN_TOKEN,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    WEBHOOK_TOKEN,
    DaemonFactory,
    Exchange,
    fixture_bytes,
    idle,
    post_alerts,
    url,
    wait_for,
)
from tests.test_evidence_prometheus import prometheus  # noqa: F401 - a fixture
from tests.test_web_browser import Pages, artefacts, chromium  # noqa: F401 - fixtures
from tests.webpage import Browser

WIDE = (1400, 900)
LOOK = ("const b = document.querySelector(arguments[0]); if (!b) { return ''; }"
        " const s = getComputedStyle(b); return s.color + ' on ' + s.backgroundColor;")
PHONE = (390, 844)
ANNOTATIONS = {"summary": "Ledger invariant broken on {symbol}",
               "description": "invariant_violation_total rose: debits and credits differ.",
               "runbook_url": "https://runbooks.example/spot-exchange#3-1"}
EVIDENCE = """\
      queries:
        - {name: withdrawals_halted, query: exchange_withdrawals_halted}
        - {name: halted_last_minute, query: "exchange_withdrawals_halted[1m]"}
"""


def ledger(symbol: str = "BTC-USD", fingerprint: str = "512b11d8b5516bb2",
           status: str = "firing") -> bytes:
    name = "resolved-single.json" if status == "resolved" else "firing-single.json"
    payload = json.loads(fixture_bytes(name))
    alert = payload["alerts"][0]
    alert["labels"]["symbol"] = symbol
    alert["annotations"] = {k: v.format(symbol=symbol) for k, v in ANNOTATIONS.items()}
    alert["fingerprint"] = fingerprint
    payload["commonLabels"] = {}
    return json.dumps(payload).encode()


async def post(http: aiohttp.ClientSession, daemon: Daemon, body: bytes) -> None:
    status, _ = await post_alerts(http, daemon, body)
    assert status == 200
    await idle(daemon)


@dataclass(frozen=True)
class Scenario:
    name: str
    prepare: Callable[[aiohttp.ClientSession, Daemon], Awaitable[None]]
    next_says: str
    why_says: str
    global_hold: str | None = None


async def contained(http: aiohttp.ClientSession, daemon: Daemon) -> None:
    await post(http, daemon, ledger())


async def rejected_key(http: aiohttp.ClientSession, daemon: Daemon) -> None:
    await post(http, daemon, ledger(symbol="eth/usd", fingerprint="0e7b0e7b0e7b0e7b"))


async def truncated(http: aiohttp.ClientSession, daemon: Daemon) -> None:
    await post(http, daemon, fixture_bytes("firing-group-truncated.json"))


async def resolved(http: aiohttp.ClientSession, daemon: Daemon) -> None:
    await post(http, daemon, ledger())
    await post(http, daemon, ledger(status="resolved"))


async def dry_run(http: aiohttp.ClientSession, daemon: Daemon) -> None:
    async with http.post(url(daemon, "/v1/mode"), json={"mode": "dry_run",
                                                        "reason": "rehearsal"},
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
        assert resp.status == 200
    await post(http, daemon, ledger())


SCENARIOS = [
    Scenario("contained", contained, "Alert still firing; containment held",
             "Ledger invariant broken on BTC-USD"),
    Scenario("rejected-key", rejected_key, "containment held",
             "symbol label `eth/usd` failed the key pattern of symbol-mode: set global-mode"
             " (whole exchange) to SOFT_HALT instead", global_hold="SOFT_HALT"),
    Scenario("truncated", truncated, "containment held",
             "1 alert of the group was not delivered (truncated): scope unknown",
             global_hold="HARD_HALT"),
    Scenario("resolved-held", resolved, "containment held; release when safe",
             "Ledger invariant broken on BTC-USD"),
    Scenario("dry-run", dry_run, "Nothing was done",
             "dry-run: would have set withdrawals (whole exchange) to HALTED; nothing was done"),
]


def look(pages: Pages, scenario: Scenario, token: str) -> dict[str, str]:
    """Log in, open incident 1, read its three answers and keep screenshots."""
    pages.login(token)
    d = pages.driver
    listed = d.find_element(By.ID, "incident-1").text
    pages.open("/incidents/1")
    seen = {"next": d.find_element(By.ID, "next").text, "why": d.find_element(By.ID, "why").text,
            "what": d.find_element(By.ID, "what").text,
            "banner": d.find_element(By.ID, "automation").text,
            "global": " ".join(e.text for e in d.find_elements(By.ID, "global-hold")),
            "forms": str(len(d.find_elements(By.CSS_SELECTOR, "#release form.release"))),
            "who": " ".join(e.text for e in d.find_elements(By.ID, "who-can-release")),
            "charts": " ".join(e.text for e in d.find_elements(By.CSS_SELECTOR, "#charts")),
            "svg": str(len(d.find_elements(By.CSS_SELECTOR, "#charts svg"))),
            "listed": listed}
    seen["release_look"] = str(d.execute_script(LOOK, "#release button"))
    role = "operator" if token == OPERATOR_TOKEN else "viewer"
    pages.shot(f"incident-{scenario.name}-{role}", WIDE)
    pages.shot(f"incident-{scenario.name}-{role}-phone", PHONE)
    pages.open("/actions")
    rows = d.execute_script(
        "return [...document.querySelectorAll('#actions tr.group')].map(r => r.innerText)")
    seen["action_groups"] = str(len(rows))
    seen["filter_look"] = str(d.execute_script(LOOK, "form.filters button"))
    seen["groups"] = "\n----\n".join(str(r) for r in rows)
    pages.shot(f"actions-{scenario.name}", WIDE)
    log_out(d)
    return seen


def log_out(d: WebDriver) -> None:
    """Submit the logout form by script: a click right after a resize can land on a node
    Chromium is still replacing, on a busy machine."""
    old = d.find_element(By.TAG_NAME, "html")
    d.execute_script("document.querySelector('form.who').submit();")
    WebDriverWait(d, 30).until(staleness_of(old))
    WebDriverWait(d, 30).until(lambda d: d.execute_script(
        "return document.readyState") == "complete")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_incident_page_says_what_why_next(
        scenario: Scenario, make_daemon: DaemonFactory, exchange: Exchange,
        chromium: WebDriver, artefacts: Path, http: aiohttp.ClientSession,  # noqa: F811
        rules_dir: Path) -> None:
    """For each kind of incident the page shows what is held, why in words, what to do next
    with the release form for an operator and the names of who can release for a viewer."""
    daemon = await make_daemon()
    await scenario.prepare(http, daemon)
    pages = Pages(chromium, f"http://127.0.0.1:{daemon.port}", artefacts)
    viewer = await asyncio.to_thread(look, pages, scenario, VIEWER_TOKEN)
    operator = await asyncio.to_thread(look, pages, scenario, OPERATOR_TOKEN)
    for seen in (viewer, operator):
        assert scenario.next_says in seen["next"], seen["next"]
        assert scenario.why_says in seen["why"], seen["why"]
        if scenario.global_hold:
            assert f"Whole exchange global-mode {scenario.global_hold}" in seen["global"]
    # One alert delivery is one row of the action log, however many records it made.
    assert viewer["action_groups"] == operator["action_groups"]
    assert "alert_received → incident_opened → alert_matched" in viewer["groups"]
    if scenario.name == "resolved-held":
        assert "resolved 2 still held" in viewer["listed"]
    if scenario.name == "dry-run":
        assert "responder contain withdrawals - --to HALTED" in viewer["next"]
        assert "DRY-RUN" in viewer["banner"]
        assert operator["forms"] == "0"
        return
    assert "Automation: enforce" in viewer["banner"]
    assert "Runbook" in viewer["why"] or scenario.name == "truncated"
    assert int(operator["forms"]) >= 1
    # Release (destructive) does not look like Filter (primary).
    assert operator["release_look"] and operator["release_look"] != operator["filter_look"]
    assert viewer["forms"] == "0"
    assert "Release needs an operator:" in viewer["who"]
    assert "olga" in viewer["who"]


async def test_evidence_queries_are_drawn(
        make_daemon: DaemonFactory, exchange: Exchange, chromium: WebDriver,  # noqa: F811
        artefacts: Path, http: aiohttp.ClientSession, rules_dir: Path,  # noqa: F811
        prometheus: str) -> None:  # noqa: F811
    """The rule's evidence queries, answered by a real Prometheus, are drawn as SVG with
    their values, on a page that needs no JavaScript."""
    spot = rules_dir / "spot-exchange.yaml"
    marker = "    evidence:\n"  # the ledger rule's, the first in the file
    assert marker in spot.read_text()
    spot.write_text(spot.read_text().replace(marker, marker + EVIDENCE, 1))
    daemon = await make_daemon(prometheus_url=prometheus)
    await post(http, daemon, ledger())

    async def snapped() -> bool:
        return await _snapshot_count(daemon) == 2

    await wait_for(snapped, what="evidence snapshots")
    pages = Pages(chromium, f"http://127.0.0.1:{daemon.port}", artefacts)
    seen = await asyncio.to_thread(look, pages, replace(SCENARIOS[0], name="charts"),
                                   VIEWER_TOKEN)
    assert "withdrawals_halted" in seen["charts"]
    assert "exchange_withdrawals_halted" in seen["charts"]
    assert "halted_last_minute" in seen["charts"]
    assert int(seen["svg"]) >= 2


async def _snapshot_count(daemon: Daemon) -> int:
    assert daemon.state is not None
    async with daemon.state.pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM evidence_snapshots"
                                       " WHERE kind = 'prometheus'"))


def watch_list(pages: Pages) -> None:
    pages.login(VIEWER_TOKEN)
    pages.open("/")
    WebDriverWait(pages.driver, 30).until(
        lambda d: "Live" in d.find_element(By.ID, "live-status").text)
    pages.driver.execute_script("window.responderMarker = 'same page';")


def wait_for_row(pages: Pages) -> str:
    d = pages.driver
    WebDriverWait(d, 30).until(lambda d: d.find_elements(By.ID, "incident-1"))
    pages.shot("incidents-live", WIDE)
    return str(d.execute_script("return window.responderMarker || 'reloaded';"))


async def test_incident_list_updates_itself(
        make_daemon: DaemonFactory, exchange: Exchange, chromium: WebDriver,  # noqa: F811
        artefacts: Path, http: aiohttp.ClientSession) -> None:  # noqa: F811
    """An alert posted while the list is open appears on it without a reload."""
    daemon = await make_daemon()
    pages = Pages(chromium, f"http://127.0.0.1:{daemon.port}", artefacts)
    await asyncio.to_thread(watch_list, pages)
    await post(http, daemon, ledger())
    assert await asyncio.to_thread(wait_for_row, pages) == "same page"


async def test_incident_page_needs_no_javascript(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession) -> None:
    """The page's answers are in the HTML the server sends (no script builds them)."""
    daemon = await make_daemon()
    await post(http, daemon, ledger())
    b = Browser(daemon)
    try:
        await b.login(VIEWER_TOKEN)
        status, html = await b.get("/incidents/1")
    finally:
        await b.close()
    assert status == 200
    assert 'id="next"' in html and 'id="why"' in html and 'id="what"' in html
    assert "Ledger invariant broken on BTC-USD" in html
    assert 'href="https://runbooks.example/spot-exchange#3-1"' in html
    assert "<script" not in html


async def test_release_from_the_incident_page_returns_there(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession) -> None:
    """The incident page's release form lowers the key and comes back to the incident; a
    forged return address goes to the controls page instead."""
    daemon = await make_daemon()
    await post(http, daemon, ledger())
    b = Browser(daemon)
    try:
        await b.login(OPERATOR_TOKEN)
        form = {"csrf": b.csrf, "control": "symbol-mode", "key": "BTC-USD",
                "to_level": "NORMAL", "reason": "ledger reconciled", "ticket": "INC-1",
                "back": "/incidents/1"}
        status, _, headers = await b.post("/controls/release", form)
        assert (status, headers["Location"]) == (303, "/incidents/1?done=released")
        assert exchange.state.symbols["BTC-USD"] == "NORMAL"
        _, html = await b.get("/incidents/1?done=released")
        assert "Released." in html
        form.update(control="withdrawals", key="-", to_level="OPEN", back="//evil.example/")
        status, _, headers = await b.post("/controls/release", form)
        assert (status, headers["Location"]) == (303, "/controls?done=released")
    finally:
        await b.close()


async def test_annotations_are_redacted_on_the_page(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession) -> None:
    """A secret pasted into an annotation is masked on the incident page, as in the log."""
    daemon = await make_daemon()
    payload = json.loads(ledger())
    payload["alerts"][0]["annotations"]["description"] = (
        f"debug: curl -H 'Authorization: Bearer {WEBHOOK_TOKEN}' http://u:p@host/")
    await post(http, daemon, json.dumps(payload).encode())
    b = Browser(daemon)
    try:
        await b.login(VIEWER_TOKEN)
        _, html = await b.get("/incidents/1")
    finally:
        await b.close()
    assert WEBHOOK_TOKEN not in html
    assert "u:p@" not in html
    assert "[REDACTED]" in html


async def test_banner_shows_break_glass_with_time_left(
        make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession) -> None:
    """During break-glass every page's banner says so, with who, why and the time left."""
    daemon = await make_daemon()
    async with http.post(url(daemon, "/v1/break-glass"),
                         json={"ttl_s": 1800, "reason": "exchange maintenance"},
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
        assert resp.status == 200, await resp.text()
    b = Browser(daemon)
    try:
        await b.login(VIEWER_TOKEN)
        for path in ("/", "/actions", "/controls"):
            _, html = await b.get(path)
            assert "BREAK-GLASS: automation paused, " in html, path
            assert " min left" in html, path
            assert "exchange maintenance" in html
    finally:
        await b.close()
