"""Evidence snapshots: the real Prometheus scrapes the simulated exchange, and the bundle
holds its answer; a query that cannot be answered is kept as failed."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from responder.daemon import Daemon
from tests.conftest import (
    DaemonFactory,
    Exchange,
    fixture_bytes,
    free_port,
    idle,
    post_alerts,
    wait_for,
)

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="the Debian 'prometheus' package (make system-deps)")

EVIDENCE = """\
    evidence:
      queries:
        - {name: withdrawals_halted, query: exchange_withdrawals_halted}
        - {name: calls_applied, query: exchange_admin_calls_applied_total}
      snapshots:
        - {name: global_mode, target: exchange, path: /admin/global/mode}
"""


@pytest.fixture
async def prometheus(exchange: Exchange, tmp_path: Path) -> AsyncIterator[str]:
    """A real Prometheus scraping the exchange every 500 ms, on a free port."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""\
global: {{scrape_interval: 500ms, evaluation_interval: 1s}}
scrape_configs:
  - job_name: exchange
    static_configs: [{{targets: ["127.0.0.1:{exchange.port}"]}}]
""")
    proc = await asyncio.create_subprocess_exec(
        "prometheus", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: _up(http, url), timeout_s=30, what="Prometheus to scrape")
        yield url
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)


async def _up(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(f"{url}/api/v1/query", params={"query": "up"}) as resp:
            data = await resp.json()
    except (aiohttp.ClientError, json.JSONDecodeError):
        return False
    return any(r["value"][1] == "1" for r in data.get("data", {}).get("result", []))


def declare_evidence(rules_dir: Path) -> None:
    """Give the ledger rule the evidence queries and status GET above, in place of its own."""
    spot = rules_dir / "spot-exchange.yaml"
    marker = "    storm: {max_incidents: 20, step: {control: global-mode, level: SOFT_HALT}}\n"
    text = spot.read_text()
    start = text.index(marker) + len(marker)
    end = text.index("\n\n", start)
    spot.write_text(text[:start] + EVIDENCE.rstrip("\n") + text[end:])


async def contained_with_snapshots(http: aiohttp.ClientSession, daemon: Daemon,
                                   database: str) -> dict[str, Any]:
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)

    async def snapped() -> bool:
        bundle = await _bundle(database)
        return bundle is not None and len(bundle["snapshots"]) == 3

    await wait_for(snapped, what="snapshots in the evidence")
    bundle = await _bundle(database)
    assert bundle is not None
    return bundle


async def _bundle(dsn: str) -> dict[str, Any] | None:
    conn = await asyncpg.connect(dsn)
    try:
        body = await conn.fetchval("SELECT body FROM evidence ORDER BY version DESC LIMIT 1")
    finally:
        await conn.close()
    return json.loads(body) if body else None


async def test_bundle_holds_prometheus_and_target_snapshots(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, rules_dir: Path,
    prometheus: str,
) -> None:
    """The declared queries and status GET are in the evidence, answered."""
    declare_evidence(rules_dir)
    daemon = await make_daemon(prometheus_url=prometheus)
    bundle = await contained_with_snapshots(http, daemon, database)
    snaps = {s["name"]: s for s in bundle["snapshots"]}
    assert all(s["ok"] for s in snaps.values()), snaps
    answer = json.loads(snaps["withdrawals_halted"]["result"]["answer"])
    assert answer["status"] == "success"
    assert answer["data"]["result"][0]["metric"]["__name__"] == "exchange_withdrawals_halted"
    assert json.loads(snaps["global_mode"]["result"]["body"]) == {"mode": "NORMAL"}


async def test_a_failed_query_is_recorded_as_failed(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, rules_dir: Path,
) -> None:
    """With Prometheus unreachable, the snapshot is in the bundle, marked failed."""
    declare_evidence(rules_dir)
    daemon = await make_daemon(prometheus_url=f"http://127.0.0.1:{free_port()}")
    bundle = await contained_with_snapshots(http, daemon, database)
    failed = {s["name"] for s in bundle["snapshots"] if not s["ok"]}
    assert failed == {"withdrawals_halted", "calls_applied"}
