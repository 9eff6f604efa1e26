"""The operator page in headless Chromium (Debian's chromium and chromium-driver, offline).

Selenium is blocking and the daemon runs on this test's event loop, so every browser step
runs in a worker thread. Screenshots of each page are kept under RESPONDER_TEST_ARTEFACTS
(default tests/artefacts/).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.conftest import (
    OPERATOR_TOKEN,
    ROOT,
    VIEWER_TOKEN,
    DaemonFactory,
    Exchange,
    idle,
    log_kinds,
    post_alerts,
)
from tests.webpage import split_brain

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")
LAPTOP = (1280, 900)
PHONE = (390, 844)


@pytest.fixture
def artefacts() -> Path:
    folder = Path(os.environ.get("RESPONDER_TEST_ARTEFACTS", ROOT / "tests" / "artefacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def chromium() -> Iterator[WebDriver]:
    """Headless Chromium through the system chromedriver; Selenium Manager is never asked."""
    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), (
        "install Debian's chromium and chromium-driver (make system-deps)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={LAPTOP[0]},{LAPTOP[1]}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def gone(element: WebElement) -> bool:
    """Whether a page's element has left the document. Chromium says so in two ways: a
    stale reference, or, while the new page is replacing the old one, an inspector error
    ("Node with given id does not belong to the document") that Selenium's staleness_of
    does not know and raises (what a busy machine made of the operator's release)."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as e:
        if "does not belong to the document" in str(e):
            return True
        raise
    return False


class Pages:
    """Blocking browser steps against one daemon, each saving what it saw."""

    def __init__(self, driver: WebDriver, base: str, artefacts: Path) -> None:
        self.driver = driver
        self.base = base
        self.artefacts = artefacts

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def shot(self, name: str, size: tuple[int, int] = LAPTOP) -> None:
        self.driver.set_window_size(*size)
        # Fit the whole page so the artefact shows everything an operator would scroll to.
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(size[0], max(size[1], min(int(height) + 120, 4000)))
        self.driver.save_screenshot(str(self.artefacts / f"{name}.png"))
        self.driver.set_window_size(*LAPTOP)

    def navigate_by(self, element: WebElement) -> None:
        """Click something that loads a page, and wait until the new page has replaced the
        old one (a click returns before the navigation ends)."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        element.click()
        wait = WebDriverWait(self.driver, 30)
        wait.until(lambda _: gone(old))
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def login(self, token: str) -> None:
        """Open the login page and log in. On a busy machine Chromium can still be swapping
        the page's nodes when the form is reached ("node does not belong to the document"):
        then the whole page is loaded and filled again, a few times at most. An attempt that
        failed after its form was sent may have logged in all the same; /login then sends
        the session home, and that is the login done."""
        for attempt in range(3):
            self.open("/login")
            try:
                WebDriverWait(self.driver, 30).until(
                    lambda d: d.find_elements(By.ID, "token") or self.logged_in())
                if self.logged_in():
                    return
                self.driver.find_element(By.ID, "token").send_keys(token)
                self.navigate_by(self.driver.find_element(By.ID, "login"))
            except WebDriverException:
                if attempt == 2:
                    raise
            else:
                return

    def logged_in(self) -> bool:
        """Whether this browser holds a session: the page says who is logged in."""
        return bool(self.driver.find_elements(By.CSS_SELECTOR, "form.who"))

    def logout(self) -> None:
        self.navigate_by(self.driver.find_element(By.CSS_SELECTOR, ".who button"))

    def viewer_flow(self) -> dict[str, str]:
        """Log in as a viewer, see the incident, find no release form, have a forged one refused."""
        seen: dict[str, str] = {}
        self.open("/")
        assert self.driver.current_url.endswith("/login")
        self.shot("login")
        self.login(VIEWER_TOKEN)
        seen["incidents"] = self.text()
        self.shot("incidents")
        self.shot("incidents-phone", PHONE)
        self.navigate_by(
            self.driver.find_element(By.CSS_SELECTOR, "#incidents a[href='/incidents/1']"))
        seen["incident"] = self.text()
        self.shot("incident")
        self.shot("incident-phone", PHONE)
        self.open("/controls")
        seen["controls"] = self.text()
        self.shot("controls-viewer")
        try:
            self.driver.find_element(By.CSS_SELECTOR, "form.release")
            seen["release_form"] = "shown"
        except NoSuchElementException:
            seen["release_form"] = "absent"
        # A viewer crafting the form by hand, with the session's own CSRF token.
        self.driver.execute_script("""
            const f = document.createElement('form');
            f.method = 'post'; f.action = '/controls/release';
            const csrf = document.querySelector('input[name=csrf]').value;
            for (const [k, v] of Object.entries({csrf, control: 'symbol-mode', key: 'BTC-USD',
                    to_level: 'CANCEL_ONLY', reason: 'viewer tries', ticket: 'INC-1'})) {
                const i = document.createElement('input');
                i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
            }
            document.body.appendChild(f); f.submit();""")
        WebDriverWait(self.driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "p.error"))
        seen["forged"] = self.text()
        self.shot("release-refused-viewer")
        self.logout()
        return seen

    def operator_flow(self) -> dict[str, str]:
        """Log in as an operator, release one stop with a ticket, read the action log."""
        seen: dict[str, str] = {}
        self.login(OPERATOR_TOKEN)
        self.open("/controls")
        self.shot("controls-operator")
        row = self.driver.find_element(
            By.XPATH, "//table[@id='controls']//tr[td/code[text()='BTC-USD']]")
        form = row.find_element(By.CSS_SELECTOR, "form.release")
        seen["to_level"] = str(form.find_element(By.NAME, "to_level").get_attribute("value"))
        form.find_element(By.NAME, "reason").send_keys("split brain resolved; book reconciled")
        form.find_element(By.NAME, "ticket").send_keys("INC-4711")
        self.navigate_by(form.find_element(By.CSS_SELECTOR, "button"))
        self.driver.find_element(By.CSS_SELECTOR, "p.notice")
        seen["controls"] = self.text()
        self.shot("controls-released")
        self.shot("controls-released-phone", PHONE)
        self.open("/actions?kind=release")
        seen["actions"] = self.text()
        self.shot("actions-release")
        self.open("/actions")
        self.shot("actions")
        return seen


async def test_viewer_then_operator_in_chromium(
        make_daemon: DaemonFactory, exchange: Exchange, chromium: WebDriver, artefacts: Path,
        database: str) -> None:
    """In a real browser a viewer sees the incident but no release form (and a forged one is
    refused); an operator releases one stop with a ticket and the action log shows it."""
    daemon = await make_daemon()
    async with aiohttp.ClientSession() as http:
        status, _ = await post_alerts(http, daemon, split_brain())
    assert status == 200
    await idle(daemon)
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"
    pages = Pages(chromium, f"http://127.0.0.1:{daemon.port}", artefacts)

    viewer = await asyncio.to_thread(pages.viewer_flow)
    assert "split-brain" in viewer["incidents"]
    assert "Incident 1" in viewer["incident"]
    assert "HARD_HALT" in viewer["controls"]
    assert "releases need an operator" in viewer["controls"]
    assert viewer["release_form"] == "absent"
    assert "403" in viewer["forged"]
    assert exchange.state.symbols["BTC-USD"] == "HARD_HALT"

    operator = await asyncio.to_thread(pages.operator_flow)
    assert operator["to_level"] == "CANCEL_ONLY"
    assert "Released" in operator["controls"]
    assert exchange.state.symbols["BTC-USD"] == "CANCEL_ONLY"
    assert "INC-4711" in operator["actions"]
    assert "olga" in operator["actions"]
    assert (await log_kinds(database)).count("release") == 1
    for name in ("login", "incidents", "incident", "controls-viewer", "controls-released",
                 "actions"):
        assert (artefacts / f"{name}.png").stat().st_size > 0


async def test_logging_in_again_is_the_login_already_done(
        make_daemon: DaemonFactory, chromium: WebDriver, artefacts: Path) -> None:
    """A login retried after its form went through finds the session, not a login page it
    would wait on for ever (what a busy machine made of a retried login)."""
    daemon = await make_daemon()
    pages = Pages(chromium, f"http://127.0.0.1:{daemon.port}", artefacts)
    await asyncio.to_thread(pages.login, VIEWER_TOKEN)
    await asyncio.wait_for(asyncio.to_thread(pages.login, VIEWER_TOKEN), timeout=20)
    assert pages.logged_in()


class Leaving:
    """An element as Chromium answers for it while its page is being replaced."""

    def __init__(self, error: WebDriverException | None) -> None:
        self.error = error

    def is_enabled(self) -> bool:
        if self.error is not None:
            raise self.error
        return True


def test_an_element_whose_node_left_the_document_is_gone() -> None:
    """Both ways Chromium says a page's element has left are taken as gone; any other error
    is not hidden, and an element still there is not gone."""
    inspector = WebDriverException(
        'unknown error: unhandled inspector error: {"code":-32000,'
        '"message":"Node with given id does not belong to the document"}')
    assert gone(Leaving(inspector))  # type: ignore[arg-type]
    assert gone(Leaving(StaleElementReferenceException("stale")))  # type: ignore[arg-type]
    assert not gone(Leaving(None))  # type: ignore[arg-type]
    with pytest.raises(WebDriverException, match="chrome not reachable"):
        gone(Leaving(WebDriverException("chrome not reachable")))  # type: ignore[arg-type]
