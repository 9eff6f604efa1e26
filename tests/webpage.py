"""Helpers for driving the operator web page over real HTTP, as a browser would."""

from __future__ import annotations

import json
import re
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
