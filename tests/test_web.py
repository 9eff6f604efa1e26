"""The operator web page over real HTTP: sessions, CSRF, roles, escaping and filters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from structlog.testing import capture_logs

from responder.daemon import Daemon
from tests.conftest import (
    OPERATOR_TOKEN,
    SECOND_OPERATOR_TOKEN,
    VIEWER_TOKEN,
    DaemonFactory,
    Exchange,
    fixture_bytes,
    idle,
    log_kinds,
    post_alerts,
    wait_for,
)
from tests.test_controls import two_person
from tests.webpage import Browser, csrf_of, split_brain, table_rows

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'

Browsers = Callable[[Daemon], Awaitable[Browser]]


@pytest.fixture
async def browser() -> AsyncIterator[Browsers]:
    opened: list[Browser] = []

    async def factory(daemon: Daemon) -> Browser:
        b = Browser(daemon)
        opened.append(b)
        return b

    yield factory
    for b in opened:
        await b.close()


async def contained(make_daemon: DaemonFactory, http: aiohttp.ClientSession,
                    **overrides: object) -> Daemon:
    daemon = await make_daemon(**overrides)
    status, _ = await post_alerts(http, daemon, split_brain())
    assert status == 200
    await idle(daemon)
    return daemon


def release_form(csrf: str, ticket: str = "INC-4711", reason: str = "book checked") -> dict[
        str, str]:
    return {"csrf": csrf, "control": "symbol-mode", "key": "BTC-USD", "to_level": "CANCEL_ONLY",
            "reason": reason, "ticket": ticket}


def login_count(daemon: Daemon, outcome: str) -> float:
    assert daemon.state is not None
    value = daemon.state.metrics.registry.get_sample_value(
        "responder_web_logins_total", {"outcome": outcome})
    return value or 0.0


async def test_pages_need_a_session(make_daemon: DaemonFactory, browser: Browsers) -> None:
    """Without a session every page sends the browser to the login form, and a form POST is
    refused with 401."""
    daemon = await make_daemon()
    b = await browser(daemon)
    for path in ("/", "/actions", "/controls", "/incidents/1", "/incidents/1/evidence"):
        status, _ = await b.get(path)
        assert status == 303, path
    status, _, _ = await b.post("/controls/release", release_form("x"))
    assert status == 401


async def test_login_issues_a_strict_httponly_cookie(make_daemon: DaemonFactory,
                                                     browser: Browsers) -> None:
    """A good token gives an HttpOnly, SameSite=Strict session cookie with an expiry, and no
    Secure flag on a plain-http public URL."""
    daemon = await make_daemon()
    b = await browser(daemon)
    status, headers = await b.login(VIEWER_TOKEN)
    assert status == 303
    cookie = next(c for c in headers.getall("Set-Cookie") if c.startswith("responder_session="))
    flags = [f.strip().lower() for f in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "secure" not in flags
    assert any(f.startswith("max-age=") for f in flags)
    assert VIEWER_TOKEN not in cookie
    status, html = await b.get("/")
    assert status == 200
    assert "viewer-token-1" in html
    assert login_count(daemon, "ok") == 1


async def test_cookie_is_secure_behind_https(make_daemon: DaemonFactory,
                                             browser: Browsers) -> None:
    """With an https public URL the session cookie is marked Secure."""
    daemon = await make_daemon(public_url="https://responder.example.net")
    b = await browser(daemon)
    _, html = await b.get("/login")
    nonce = csrf_of(html)
    # The client keeps Secure cookies for https only; send the login nonce by hand.
    status, _, headers = await b.post(
        "/login", {"csrf": nonce, "token": VIEWER_TOKEN},
        headers={"Origin": "https://responder.example.net",
                 "Cookie": f"responder_login={nonce}"})
    assert status == 303
    cookie = next(c for c in headers.getall("Set-Cookie") if c.startswith("responder_session="))
    assert "secure" in [f.strip().lower() for f in cookie.split(";")]


async def test_failed_login_is_counted_and_the_token_never_logged(
        make_daemon: DaemonFactory, browser: Browsers) -> None:
    """A wrong token gets 401 and the login form again, counts in the metric, and does not
    appear in any log line."""
    daemon = await make_daemon()
    b = await browser(daemon)
    wrong = "wrong-token-that-must-not-be-logged-5150"
    with capture_logs() as logs:
        status, _ = await b.login(wrong)
    assert status == 401
    assert login_count(daemon, "bad_token") == 1
    assert any(e.get("reason") == "bad_token" for e in logs)
    assert wrong not in repr(logs)
    status, _ = await b.get("/")
    assert status == 303


async def test_login_form_needs_its_csrf_nonce(make_daemon: DaemonFactory,
                                               browser: Browsers) -> None:
    """A login POST without the nonce from the login page (a cross-site login) is refused."""
    daemon = await make_daemon()
    b = await browser(daemon)
    status, _, _ = await b.post("/login", {"csrf": "guess", "token": OPERATOR_TOKEN})
    assert status == 403
    assert login_count(daemon, "bad_csrf") == 1


async def test_release_without_the_csrf_token_is_refused(
        make_daemon: DaemonFactory, http: aiohttp.ClientSession, exchange: Exchange,
        browser: Browsers, database: str) -> None:
    """An operator's release POST with a missing or wrong CSRF token, or from a foreign
    origin, is refused with 403 and changes nothing."""
    daemon = await contained(make_daemon, http)
    b = await browser(daemon)
    await b.login(OPERATOR_TOKEN)
    for sent, headers in ((release_form(""), None), (release_form(b.csrf + "x"), None),
                          (release_form(b.csrf), {"Origin": "https://evil.example"})):
        form = {k: v for k, v in sent.items() if v}
        status, _, _ = await b.post("/controls/release", form, headers=headers)
        assert status == 403
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"
    assert "release" not in await log_kinds(database)


async def test_viewer_sees_no_release_form_and_cannot_post_one(
        make_daemon: DaemonFactory, http: aiohttp.ClientSession, exchange: Exchange,
        browser: Browsers, database: str) -> None:
    """A viewer sees what is held but no release form; a crafted POST with a valid CSRF token
    gets 403 and nothing is released."""
    daemon = await contained(make_daemon, http)
    b = await browser(daemon)
    await b.login(VIEWER_TOKEN)
    status, html = await b.get("/controls")
    assert status == 200
    assert "HARD_HALT" in html
    assert 'action="/controls/release"' not in html
    status, body, _ = await b.post("/controls/release", release_form(b.csrf))
    assert status == 403
    assert "this needs operator" in body
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"
    assert "release_intent" not in await log_kinds(database)


async def test_operator_releases_one_stop_through_the_form(
        make_daemon: DaemonFactory, http: aiohttp.ClientSession, exchange: Exchange,
        browser: Browsers) -> None:
    """An operator's release goes through the engine: one stop down on the exchange, and the
    action log page shows the release with its ticket."""
    daemon = await contained(make_daemon, http)
    b = await browser(daemon)
    await b.login(OPERATOR_TOKEN)
    status, _, headers = await b.post("/controls/release", release_form(b.csrf))
    assert status == 303
    assert headers["Location"] == "/controls?done=released"
    assert exchange.state.symbols["BTC-USD"] == "CANCEL_ONLY"
    status, html = await b.get("/actions?kind=release")
    assert status == 200
    assert "INC-4711" in html
    assert "olga" in html
    again, body, _ = await b.post("/controls/release", release_form(b.csrf))
    assert again == 409
    assert "release to NORMAL first" in body


async def test_two_person_release_waits_for_another_operator(
        make_daemon: DaemonFactory, http: aiohttp.ClientSession, exchange: Exchange,
        browser: Browsers, rules_dir: Path) -> None:
    """Where two people are configured, the page's release is a request; the requester gets
    no approve button, another operator approves it and the level drops."""
    two_person(rules_dir)
    daemon = await contained(make_daemon, http)
    olga, otto = await browser(daemon), await browser(daemon)
    await olga.login(OPERATOR_TOKEN)
    await otto.login(SECOND_OPERATOR_TOKEN)
    status, _, headers = await olga.post("/controls/release", release_form(olga.csrf))
    assert (status, headers["Location"]) == (303, "/controls?done=requested")
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"
    _, html = await olga.get("/controls")
    assert "awaiting another operator" in html
    assert 'action="/controls/approve"' not in html
    _, html = await otto.get("/controls")
    assert 'action="/controls/approve"' in html
    status, _, _ = await olga.post("/controls/approve", {"csrf": olga.csrf, "request_id": "1"})
    assert status == 403
    status, _, _ = await otto.post("/controls/approve", {"csrf": otto.csrf, "request_id": "1"})
    assert status == 303
    assert exchange.state.symbols["BTC-USD"] == "CANCEL_ONLY"


OWN_SCRIPT = '<script src="/static/live.js" defer></script>'


async def test_hostile_values_are_escaped(make_daemon: DaemonFactory,
                                          http: aiohttp.ClientSession, browser: Browsers) -> None:
    """Label values, reasons and tickets with markup are shown as text on every page, never
    as HTML."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, split_brain(instance=HOSTILE, team=HOSTILE))
    await idle(daemon)
    b = await browser(daemon)
    await b.login(OPERATOR_TOKEN)
    status, _, _ = await b.post("/controls/release",
                                release_form(b.csrf, ticket=HOSTILE, reason=HOSTILE))
    assert status == 303
    for path in ("/", "/incidents/1", "/actions", "/controls", "/actions?kind=" + "%3Cscript%3E"):
        status, html = await b.get(path)
        assert status == 200, path
        html = html.replace(OWN_SCRIPT, "", 1)  # the page's own live-update script
        assert "<script" not in html, path
        assert "<img src=x" not in html, path
    _, html = await b.get("/incidents/1")
    assert "&lt;script&gt;" in html


async def test_action_log_filters(make_daemon: DaemonFactory, http: aiohttp.ClientSession,
                                  browser: Browsers) -> None:
    """The incident list shows what was verified, newest first; the action log narrows by
    rule, control, outcome, kind and time; bad filters get 400."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await post_alerts(http, daemon, split_brain())
    await idle(daemon)
    b = await browser(daemon)
    await b.login(VIEWER_TOKEN)

    async def kinds_rules(query: str) -> list[tuple[str, str]]:
        status, html = await b.get("/actions?" + query)
        assert status == 200, query
        return [(row[2], row[3]) for row in table_rows(html, "actions")]

    _, listing = await b.get("/")
    rows = listing.split("<tbody>")[1].split("</tr>")
    assert "split-brain" in rows[0]
    assert '<span class="tag ok">verified</span>' in rows[0]
    assert "ledger-invariant-violation" in rows[1]
    assert '<span class="tag ok">verified</span>' in rows[1]
    everything = await kinds_rules("")
    assert {r for _, r in everything} >= {"split-brain", "ledger-invariant-violation"}
    by_rule = await kinds_rules("rule=split-brain")
    assert by_rule
    assert {r for _, r in by_rule} == {"split-brain"}
    applied = await kinds_rules("outcome=applied")
    assert applied
    assert {k for k, _ in applied} == {"outcome"}
    _, html = await b.get("/actions?control=withdrawals")
    controls = {row[4].split()[0] for row in table_rows(html, "actions")}
    assert controls == {"withdrawals"}
    assert await kinds_rules("since=2999-01-01T00:00") == []
    assert await kinds_rules("until=2000-01-01T00:00Z") == []
    for bad in ("since=yesterday", "outcome=%3Cx%3E", "before=-1", "incident=x",
                "rule=" + "r" * 300):
        status, _ = await b.get("/actions?" + bad)
        assert status == 400, bad


async def test_bad_input_gets_4xx(make_daemon: DaemonFactory, browser: Browsers) -> None:
    """Unknown incidents, malformed ids, unreadable forms and unknown controls answer 4xx."""
    daemon = await make_daemon()
    b = await browser(daemon)
    await b.login(OPERATOR_TOKEN)
    assert (await b.get("/incidents/abc"))[0] == 400
    assert (await b.get("/incidents/99"))[0] == 404
    assert (await b.get("/incidents/99/evidence"))[0] == 404
    assert (await b.get("/?before=x"))[0] == 400
    form = release_form(b.csrf) | {"control": "<nope>"}
    assert (await b.post("/controls/release", form))[0] == 404
    form = release_form(b.csrf) | {"ticket": ""}
    assert (await b.post("/controls/release", form))[0] == 400
    form = release_form(b.csrf) | {"key": "not a symbol"}
    assert (await b.post("/controls/release", form))[0] == 400
    form = release_form(b.csrf) | {"control": "symbol-mode", "reason": "nul\x00here"}
    assert (await b.post("/controls/release", form))[0] == 400
    assert (await b.post("/controls/approve", {"csrf": b.csrf, "request_id": "x"}))[0] == 400
    async with b.http.post(f"http://127.0.0.1:{daemon.port}/controls/release",
                           data=b"\xff\xfe", headers={"Content-Type": "application/json"},
                           allow_redirects=False) as resp:
        assert resp.status == 400
    async with b.http.get(f"http://127.0.0.1:{daemon.port}/",
                          cookies={"responder_session": "x" * 5000}) as resp:
        assert resp.status in (200, 303)


async def test_logout_ends_the_session(make_daemon: DaemonFactory, browser: Browsers) -> None:
    """After logout the old cookie no longer opens a page, even if replayed."""
    daemon = await make_daemon()
    b = await browser(daemon)
    await b.login(VIEWER_TOKEN)
    cookie = next(c for c in b.http.cookie_jar if c.key == "responder_session").value
    status, _, _ = await b.post("/logout", {"csrf": b.csrf})
    assert status == 303
    assert (await b.get("/"))[0] == 303
    replay = await browser(daemon)
    async with replay.http.get(f"http://127.0.0.1:{daemon.port}/", allow_redirects=False,
                               cookies={"responder_session": cookie}) as resp:
        assert resp.status == 303


async def test_logout_holds_on_every_replica(make_daemon: DaemonFactory,
                                             browser: Browsers) -> None:
    """Two replicas share the session secret and the store: a logout through one ends the
    session on the other too (and so across restarts)."""
    secret = "s3ssion-secret-shared-by-replicas-0123456789"
    first = await make_daemon(web_session_secret=secret)
    second = await make_daemon(web_session_secret=secret)
    b = await browser(first)
    await b.login(VIEWER_TOKEN)
    cookie = next(c for c in b.http.cookie_jar if c.key == "responder_session").value
    other = await browser(second)
    async with other.http.get(f"http://127.0.0.1:{second.port}/", allow_redirects=False,
                              cookies={"responder_session": cookie}) as resp:
        assert resp.status == 200  # the cookie opens the other replica's page
    status, _, _ = await b.post("/logout", {"csrf": b.csrf})
    assert status == 303
    async with other.http.get(f"http://127.0.0.1:{second.port}/", allow_redirects=False,
                              cookies={"responder_session": cookie}) as resp:
        assert resp.status == 303


async def test_forged_or_expired_cookie_is_refused(make_daemon: DaemonFactory,
                                                   browser: Browsers) -> None:
    """A cookie signed with another secret, edited, past its expiry, or made with a token
    that is no longer configured (rotated after a leak) opens nothing."""
    import time

    from responder.auth import Principal, token_sha256
    from responder.web.context import WEB
    from responder.web.session import Sessions
    from tests.conftest import ADMIN_TOKEN

    daemon = await make_daemon(web_session_secret="s" * 40)
    assert daemon.state is not None
    assert daemon._runner is not None
    app = daemon._runner.app
    mine = app[WEB].sessions
    admin = Principal("ada", "admin")
    digest = token_sha256(ADMIN_TOKEN)
    _, forged = Sessions(b"another-secret" * 3, 3600).issue(admin, digest)
    _, expired = mine.issue(admin, digest, now=time.time() - 2 * mine.ttl_s)
    _, rotated = mine.issue(admin, token_sha256("a-token-no-longer-configured"))
    _, good = mine.issue(admin, digest)
    payload, _, sig = good.rpartition(".")
    edited = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + sig
    b = await browser(daemon)
    for cookie, expected in ((forged, 303), (expired, 303), (edited, 303), (rotated, 303),
                             (good, 200)):
        async with b.http.get(f"http://127.0.0.1:{daemon.port}/", allow_redirects=False,
                              cookies={"responder_session": cookie}) as resp:
            assert resp.status == expected


async def test_incident_page_links_the_sealed_bundle_and_its_deliveries(
        make_daemon: DaemonFactory, http: aiohttp.ClientSession, browser: Browsers,
        database: str, tmp_path: Path) -> None:
    """The incident page shows the whole timeline, each bundle's digest and a download that
    carries the same digest, and the list and timeline show the file sink's delivery."""
    daemon = await contained(make_daemon, http, sinks=[
        {"name": "files", "kind": "file", "dir": str(tmp_path / "evidence")}])

    async def delivered() -> bool:
        conn = await asyncpg.connect(database)
        try:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE status = 'delivered' AND kind = 'bundle'"))
        finally:
            await conn.close()

    await wait_for(delivered, timeout_s=20, what="the bundle delivery")
    conn = await asyncpg.connect(database)
    try:
        digest = await conn.fetchval("SELECT digest FROM evidence WHERE incident_id = 1"
                                     " ORDER BY version DESC LIMIT 1")
    finally:
        await conn.close()
    b = await browser(daemon)
    await b.login(VIEWER_TOKEN)
    status, html = await b.get("/incidents/1")
    assert status == 200
    assert digest in html
    for kind in ("alert_matched", "intent", "outcome", "evidence_sealed", "delivery (bundle)"):
        assert f"<b>{kind}</b>" in html, kind
    _, listing = await b.get("/")
    assert "1 delivered" in listing
    async with b.http.get(f"http://127.0.0.1:{daemon.port}/incidents/1/evidence",
                          allow_redirects=False) as resp:
        assert resp.status == 200
        assert "attachment" in resp.headers["Content-Disposition"]
        body = await resp.json()
    assert body["digest"] == digest == resp.headers["X-Evidence-Digest"]
    assert body["bundle"]["incident"]["id"] == 1


NASTY = ("%00", "a%00b", "%C3%A9", "%FF", "-1", " ", "9" * 30, "2026-13-45", "1e9",
         "%3Cb%3E", "'%20OR%201=1--", "x" * 199)


async def test_hostile_query_values_never_cause_a_5xx(make_daemon: DaemonFactory,
                                                      http: aiohttp.ClientSession,
                                                      browser: Browsers) -> None:
    """Every filter and id given NUL bytes, odd encodings, huge numbers or SQL answers 2xx
    or 4xx."""
    daemon = await contained(make_daemon, http)
    b = await browser(daemon)
    await b.login(VIEWER_TOKEN)
    paths = [f"/actions?{p}={v}" for p in ("rule", "control", "kind", "outcome", "since",
                                            "until", "incident", "before") for v in NASTY]
    paths += [f"/?before={v}" for v in NASTY] + [f"/incidents/{v}" for v in NASTY]
    paths += [f"/incidents/1/evidence?version={v}" for v in NASTY]
    for path in paths:
        status, _ = await b.get(path)
        assert status < 500, path


def test_a_short_session_secret_is_refused() -> None:
    """A session secret under 32 characters is a startup error naming the setting."""
    from responder.config import load_settings
    from responder.errors import ConfigError

    with pytest.raises(ConfigError, match="RESPONDER_WEB_SESSION_SECRET"):
        load_settings(None, web_session_secret="short")
    assert load_settings(None, web_session_secret="").web.session_secret is None
