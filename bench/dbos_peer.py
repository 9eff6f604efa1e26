"""The DBOS peer: what a Python engineer would build with durable workflows instead of responder.

An aiohttp handler starts one DBOS workflow per alert, its id made from the fingerprint and
``startsAt`` (so a re-delivered alert joins the workflow it already started). The workflow
has one checkpointed step that makes the containment call ``PUT /admin/symbols/{s}/mode``.
The handler answers 202 once DBOS has durably recorded every workflow it started, the same
promise responder makes; the call happens after the answer. DBOS keeps its system tables on
the PostgreSQL given by ``--dsn`` (a database of its own in the bench).

No authentication, validation, rules or audit log, as in the floor.

Run: ``python -m bench.dbos_peer --listen 127.0.0.1:PORT --dsn DSN --exchange-url URL``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

import aiohttp
from aiohttp import web
from dbos import DBOS, DBOSConfig, SetWorkflowID

MODE_BODY = json.dumps({"mode": "CANCEL_ONLY"}).encode()


class Target:
    """The one HTTP session the step uses; set before DBOS launches."""

    session: aiohttp.ClientSession | None = None
    exchange_url: str = ""


class CallFailedError(Exception):
    """The target answered the containment call with a non-2xx status."""


# dbos is the bench extra's; without it mypy sees the decorators untyped.
@DBOS.step(retries_allowed=True, max_attempts=3)  # type: ignore[untyped-decorator,unused-ignore]
async def contain(symbol: str) -> int:
    """Halt trading on one symbol; DBOS checkpoints the status once the step returns."""
    assert Target.session is not None
    url = f"{Target.exchange_url}/admin/symbols/{symbol}/mode"
    async with Target.session.put(url, data=MODE_BODY) as resp:
        await resp.read()
        if not 200 <= resp.status < 300:
            raise CallFailedError(f"PUT {url}: HTTP {resp.status}")
        return resp.status


@DBOS.workflow()  # type: ignore[untyped-decorator,unused-ignore]
async def respond(symbol: str) -> int:
    """One alert's durable workflow: a single containment step."""
    status: int = await contain(symbol)
    return status


async def webhook(request: web.Request) -> web.Response:
    alerts: list[dict[str, Any]] = json.loads(await request.read())["alerts"]
    for alert in alerts:
        with SetWorkflowID(f"{alert['fingerprint']}-{alert['startsAt']}"):
            await DBOS.start_workflow_async(respond, alert["labels"]["symbol"])
    return web.json_response({"started": len(alerts)}, status=202)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(host: str, port: int, dsn: str, exchange_url: str, token: str | None) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    # DBOS wants a SQLAlchemy URL; the psycopg driver comes with it.
    sqlalchemy_dsn = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    config: DBOSConfig = {"name": "bench-dbos-peer", "system_database_url": sqlalchemy_dsn,
                          "log_level": "WARNING"}
    async with aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(limit=100)) as session:
        Target.session = session
        Target.exchange_url = exchange_url.rstrip("/")
        DBOS(config=config)
        DBOS.launch()
        app = web.Application()
        app.router.add_post("/webhooks/alertmanager", webhook)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            await stop.wait()
        finally:
            await runner.cleanup()
            DBOS.destroy(workflow_completion_timeout_sec=5)


def main() -> None:
    p = argparse.ArgumentParser(prog="bench.dbos_peer", description=__doc__)
    p.add_argument("--listen", required=True, help="HOST:PORT")
    p.add_argument("--dsn", required=True, help="PostgreSQL DSN of the peer's own database")
    p.add_argument("--exchange-url", required=True)
    p.add_argument("--exchange-token", help="sent as a bearer token, like responder does")
    args = p.parse_args()
    host, _, port = args.listen.rpartition(":")
    asyncio.run(serve(host, int(port), args.dsn, args.exchange_url, args.exchange_token))


if __name__ == "__main__":
    main()
