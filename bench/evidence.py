"""Time from the first alert to a sealed bundle, and bundle sizes, for the exchange example.

Runs the daemon in-process against the simulated exchange, with and without the rule's
Prometheus queries (the real `prometheus` binary scraping the exchange, if installed).
Run from the repository root: ``.venv/bin/python bench/evidence.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.exchange import make_app  # noqa: E402
from responder.config import load_settings  # noqa: E402
from responder.daemon import Daemon  # noqa: E402
from responder.logging import configure_logging  # noqa: E402
from responder.redaction import Redactor  # noqa: E402

ADMIN_DSN = os.environ.get("RESPONDER_TEST_DATABASE_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
ALERT = (ROOT / "tests" / "fixtures" / "firing-single.json").read_bytes()
EVIDENCE = """\
    evidence:
      queries:
        - {name: withdrawals_halted, query: exchange_withdrawals_halted}
        - {name: symbol_modes, query: exchange_symbol_mode_rank}
        - {name: calls_applied, query: exchange_admin_calls_applied_total}
      snapshots:
        - {name: global_mode, target: exchange, path: /admin/global/mode}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def once(rules_dir: Path, prometheus_url: str | None, expect_snapshots: int) -> None:
    name = f"bench_evidence_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = ADMIN_DSN.rpartition("/")[0] + f"/{name}"
    daemon = Daemon(load_settings(None, listen="127.0.0.1:0", database_url=dsn,
                                  rules_dir=rules_dir, webhook_tokens=["bench-token"],
                                  prometheus_url=prometheus_url, reconcile_interval_s=0,
                                  log_level="warning"), registry=CollectorRegistry())
    try:
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            t0 = time.monotonic()
            async with http.post(f"http://127.0.0.1:{daemon.port}/webhooks/alertmanager",
                                 data=ALERT, headers={"Authorization": "Bearer bench-token"}):
                pass
            assert daemon.state is not None
            while True:
                async with daemon.state.pool.acquire() as conn:
                    row = await conn.fetchrow(
                        "SELECT version, length(body) AS size, body FROM evidence"
                        " ORDER BY version DESC LIMIT 1")
                if row is not None and '"kind":"outcome"' in row["body"] and (
                        row["body"].count('"taken_at"') >= expect_snapshots):
                    break
                if time.monotonic() - t0 > 30:
                    raise TimeoutError("no sealed bundle in 30 s")
                await asyncio.sleep(0.005)
            elapsed = time.monotonic() - t0
        label = "with queries" if prometheus_url else "without queries"
        print(f"{label}: first alert to a sealed bundle with outcomes {elapsed * 1000:.0f} ms"
              f" (version {row['version']}), bundle {row['size']} bytes")
    finally:
        await daemon.shutdown()
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> None:
    configure_logging(Redactor(), "warning")
    app = make_app("bench-exchange-token")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    os.environ["RESPONDER_EXCHANGE_URL"] = f"http://127.0.0.1:{port}"
    os.environ["RESPONDER_EXCHANGE_TOKEN"] = "bench-exchange-token"
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain"
        shutil.copytree(ROOT / "rules", plain)
        await once(plain, None, 0)
        if shutil.which("prometheus") is None:
            print("with queries: skipped (no prometheus binary)")
        else:
            with_q = Path(tmp) / "queries"
            shutil.copytree(ROOT / "rules", with_q)
            spot = with_q / "spot-exchange.yaml"
            marker = ("    storm: {max_incidents: 20, step: {control: global-mode,"
                      " level: SOFT_HALT}}\n")
            text = spot.read_text()  # the rule's own evidence block gives way to EVIDENCE
            start = text.index(marker) + len(marker)
            spot.write_text(text[:start] + EVIDENCE.rstrip("\n") + text[text.index("\n\n", start):])
            prom_port = free_port()
            (Path(tmp) / "p.yml").write_text(
                "global: {scrape_interval: 500ms}\nscrape_configs:\n  - job_name: exchange\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n")
            proc = await asyncio.create_subprocess_exec(
                "prometheus", f"--config.file={tmp}/p.yml",
                f"--web.listen-address=127.0.0.1:{prom_port}", f"--storage.tsdb.path={tmp}/tsdb",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            try:
                await asyncio.sleep(3)  # let it start and scrape a few times
                await once(with_q, f"http://127.0.0.1:{prom_port}", 4)
            finally:
                proc.terminate()
                await proc.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
