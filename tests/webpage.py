"""Helpers for driving the operator web page over real HTTP, as a browser would."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import aiohttp

from responder.daemon import Daemon
from tests.conftest import fixture_bytes, url

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def split_brain(**extra_labels: str) -> bytes:
    """An Alertmanager payload for SplitBrainSuspected on BTC-USD, with extra labels."""
    payload = json.loads(fixture_bytes("firing-single.json"))
    alert = payload["alerts"][0]
    alert["labels"].update({"alertname": "SplitBrainSuspected", **extra_labels})
    alert["fingerprint"] = "5b11d7a0c0ffee01"
    payload["commonLabels"] = {}
    return json.dumps(payload).encode()


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


class Browser:
    """A cookie-keeping HTTP client logged in to one daemon's page."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(url(self.daemon, path), allow_redirects=False) as resp:
            return resp.status, await resp.text()

    async def post(self, path: str, form: dict[str, str],
                   headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
        async with self.http.post(url(self.daemon, path), data=form, allow_redirects=False,
                                  headers=headers) as resp:
            return resp.status, await resp.text(), resp.headers

    async def login(self, token: str) -> tuple[int, Any]:
        _, html = await self.get("/login")
        status, _, headers = await self.post("/login", {"csrf": csrf_of(html), "token": token})
        if status == 303:
            _, home = await self.get("/")
            self.csrf = csrf_of(home)
        return status, headers


class _Table(HTMLParser):
    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id = table_id
        self.inside = False
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("id", self.table_id) in attrs:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag == "td":
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif tag == "td" and self.cell is not None and self.rows:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def table_rows(html: str, table_id: str) -> list[list[str]]:
    """The text of each body cell of one table, row by row."""
    parser = _Table(table_id)
    parser.feed(html)
    return [row for row in parser.rows if row]
