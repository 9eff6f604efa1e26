"""End to end through the real Alertmanager binary: fire, contain once, ignore its repeats."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from responder.daemon import Daemon
from tests.conftest import (
    VIEWER_TOKEN,
    WEBHOOK_TOKEN,
    DaemonFactory,
    Exchange,
    free_port,
    idle,
    url,
    wait_for,
)

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
START_ATTEMPTS = 3
READY_TIMEOUT_S = 15.0

pytestmark = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="the Alertmanager binary is not installed (`make system-deps` installs Debian's"
           " prometheus-alertmanager)",
)

# Alertmanager refuses `repeat_interval: 0s` but accepts anything above zero. A repeat is only
# sent at a group flush (every group_interval) once repeat_interval has fully passed since the
# last send, and the flush lands a few ms short of that; with both at 1s the first delivery is
# at once and the same notification comes again about every 2 s.
CONFIG = """\
route:
  receiver: responder
  group_by: [alertname, symbol]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1s
receivers:
  - name: responder
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""


@dataclass
class Alertmanager:
    """A real Alertmanager process listening on a loopback port."""

    process: asyncio.subprocess.Process
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


AlertmanagerFactory = Callable[[str], Awaitable[Alertmanager]]


async def _stop(am: Alertmanager) -> None:
    if am.process.returncode is None:
        am.process.kill()
        await am.process.wait()


async def _ready(http: aiohttp.ClientSession, am: Alertmanager) -> bool:
    try:
        async with http.get(f"{am.url}/-/ready") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def _launch(tmp_path: Path, http: aiohttp.ClientSession, webhook_url: str,
                  attempt: int) -> Alertmanager | None:
    """Start one Alertmanager; None if it exited early (most likely its port was taken)."""
    assert ALERTMANAGER is not None
    home = tmp_path / f"alertmanager-{attempt}"
    home.mkdir()
    config = home / "am.yml"
    config.write_text(CONFIG.format(webhook_url=json.dumps(webhook_url),
                                    token=json.dumps(WEBHOOK_TOKEN)))
    port = free_port()
    log_path = home / "alertmanager.log"
    with log_path.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # empty: no gossip, no second port
            "--log.level=debug",
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )
    am = Alertmanager(process, port, log_path)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.returncode is not None:
            return None
        if await _ready(http, am):
            return am
        await asyncio.sleep(0.05)
    await _stop(am)
    raise AssertionError(f"Alertmanager did not become ready:\n{am.log()}")


@pytest.fixture
async def start_alertmanager(tmp_path: Path,
                             http: aiohttp.ClientSession) -> AsyncIterator[AlertmanagerFactory]:
    """Start real Alertmanagers delivering to a webhook URL; every one is killed afterwards."""
    started: list[Alertmanager] = []

    async def factory(webhook_url: str) -> Alertmanager:
        for attempt in range(START_ATTEMPTS):
            am = await _launch(tmp_path, http, webhook_url, attempt)
            if am is not None:
                started.append(am)
                return am
        raise AssertionError(f"Alertmanager exited early {START_ATTEMPTS} times:\n"
                             f"{(tmp_path / 'alertmanager-0' / 'alertmanager.log').read_text()}")

    yield factory
    for am in started:
        await _stop(am)


async def _outcomes(http: aiohttp.ClientSession, daemon: Daemon) -> list[dict[str, Any]]:
    async with http.get(url(daemon, "/v1/actions?kind=outcome"),
                        headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    records: list[dict[str, Any]] = body["records"]
    return records


async def _redeliveries_metric(http: aiohttp.ClientSession, daemon: Daemon) -> float:
    async with http.get(url(daemon, "/metrics")) as resp:
        text = await resp.text()
    found = re.search(r'^responder_alert_redeliveries_total\{source="alertmanager"\} (\S+)$',
                      text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _deliveries(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT deliveries FROM inbox ORDER BY id")
    finally:
        await conn.close()
    return [int(r["deliveries"]) for r in rows]


@pytest.mark.timeout(90)
async def test_alertmanager_fires_containment_once_and_repeats_change_nothing(
        make_daemon: DaemonFactory, start_alertmanager: AlertmanagerFactory,
        exchange: Exchange, database: str, http: aiohttp.ClientSession) -> None:
    """Alertmanager's LedgerInvariantViolation contains BTC-USD once; its repeats call nothing."""
    daemon = await make_daemon()
    am = await start_alertmanager(url(daemon, "/webhooks/alertmanager"))

    alert = {"labels": {"alertname": "LedgerInvariantViolation", "severity": "sev1",
                        "symbol": "BTC-USD"},
             "annotations": {"summary": "ledger does not balance"}}
    async with http.post(f"{am.url}/api/v2/alerts", json=[alert]) as resp:
        assert resp.status == 200, await resp.text()

    def contained() -> bool:
        return (exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY"
                and exchange.state.withdrawals == "HALTED")

    try:
        await wait_for(contained, 20.0, "CANCEL_ONLY on BTC-USD and withdrawals HALTED")
    except AssertionError as e:
        raise AssertionError(f"{e}\nAlertmanager log:\n{am.log()}") from e
    await idle(daemon)

    outcomes = await _outcomes(http, daemon)
    assert sorted((r["control"], r["key"], r["detail"]["status"], r["detail"]["level"])
                  for r in outcomes if r["control"] == "symbol-mode") == [
        ("symbol-mode", "BTC-USD", "applied", "CANCEL_ONLY")]
    assert [(r["detail"]["status"], r["detail"]["level"])
            for r in outcomes if r["control"] == "withdrawals"] == [("applied", "HALTED")]
    assert len(outcomes) == 2
    calls_after_containment = list(exchange.state.calls)
    assert sorted(c.path for c in calls_after_containment if c.applied) == [
        "/admin/symbols/BTC-USD/mode", "/admin/withdrawals"]

    async def redelivered() -> bool:
        deliveries = await _deliveries(database)
        return len(deliveries) == 1 and deliveries[0] >= 2

    try:
        await wait_for(redelivered, 20.0, "Alertmanager to deliver the same alert again")
    except AssertionError as e:
        raise AssertionError(f"{e}\nAlertmanager log:\n{am.log()}") from e
    assert await _redeliveries_metric(http, daemon) >= 1
    await idle(daemon)

    assert exchange.state.calls == calls_after_containment, "a repeat reached the admin API"
    assert len(await _outcomes(http, daemon)) == 2
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY"}
    assert exchange.state.withdrawals == "HALTED"
    assert exchange.state.global_mode == "NORMAL"
