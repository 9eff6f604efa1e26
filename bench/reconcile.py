"""Time one reconcile pass over N contained keys against the simulated exchange.

Two passes: one where the exchange agrees with every held level (reads only), and one
after the exchange has forgotten everything (a read, a re-apply and a read-back per key).

Run from the repository root: ``.venv/bin/python bench/reconcile.py [--keys 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from pathlib import Path

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.exchange import STATE, make_app  # noqa: E402
from responder.config import load_settings  # noqa: E402
from responder.daemon import Daemon  # noqa: E402
from responder.logging import configure_logging  # noqa: E402
from responder.redaction import Redactor  # noqa: E402

ADMIN_DSN = os.environ.get("RESPONDER_TEST_DATABASE_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
TOKEN = "bench-reconcile-token"


async def main(keys: int) -> None:
    configure_logging(Redactor(), "warning")
    app = make_app(TOKEN)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    os.environ["RESPONDER_EXCHANGE_URL"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
    os.environ["RESPONDER_EXCHANGE_TOKEN"] = TOKEN
    name = f"bench_reconcile_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = ADMIN_DSN.rpartition("/")[0] + f"/{name}"
    daemon = Daemon(load_settings(None, listen="127.0.0.1:0", database_url=dsn,
                                  rules_dir=ROOT / "rules", reconcile_interval_s=0,
                                  log_level="warning"), registry=CollectorRegistry())
    try:
        await daemon.start()
        assert daemon.state is not None
        assert daemon.reconciler is not None
        symbols = [f"S{i}-USD" for i in range(keys)]
        async with daemon.state.pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO control_levels (control, key, level, rank, set_by)"
                " VALUES ('symbol-mode', $1, 'HARD_HALT', 3, 'bench')", [(s,) for s in symbols])
        exchange = app[STATE]
        exchange.symbols.update(dict.fromkeys(symbols, "HARD_HALT"))
        steady = await daemon.reconciler.pass_once()
        exchange.forget()
        drifted = await daemon.reconciler.pass_once()
        print(f"keys {keys}: in-sync pass {steady.seconds:.2f} s ({steady.checked} read);"
              f" all-drifted pass {drifted.seconds:.2f} s ({drifted.corrected} corrected,"
              f" {drifted.failed} failed)")
    finally:
        await daemon.shutdown()
        await runner.cleanup()
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1000)
    asyncio.run(main(parser.parse_args().keys))
