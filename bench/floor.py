"""The floor: the least a webhook-to-containment service can do, to compare responder with.

Per request it parses the JSON, inserts the alerts with one INSERT in one transaction, then
makes one admin call per alert (``PUT /admin/symbols/{symbol}/mode``) before answering.
No authentication, validation, rules, audit log or retries.

Run: ``python -m bench.floor --listen 127.0.0.1:PORT --dsn DSN --exchange-url URL``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id          bigserial PRIMARY KEY,
    fingerprint text NOT NULL,
    starts_at   text NOT NULL,
    status      text NOT NULL,
    alert       jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT = """
INSERT INTO alerts (fingerprint, starts_at, status, alert)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
"""
MODE_BODY = json.dumps({"mode": "CANCEL_ONLY"}).encode()

POOL = web.AppKey("pool", asyncpg.Pool)
SESSION = web.AppKey("session", aiohttp.ClientSession)
EXCHANGE_URL = web.AppKey("exchange_url", str)


async def _admin_call(request: web.Request, symbol: str) -> int:
    url = f"{request.app[EXCHANGE_URL]}/admin/symbols/{symbol}/mode"
    async with request.app[SESSION].put(url, data=MODE_BODY) as resp:
        await resp.read()
        return resp.status


async def webhook(request: web.Request) -> web.Response:
    alerts: list[dict[str, Any]] = json.loads(await request.read())["alerts"]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await conn.execute(
            INSERT,
            [a["fingerprint"] for a in alerts],
            [a["startsAt"] for a in alerts],
            [a["status"] for a in alerts],
            [json.dumps(a) for a in alerts],
        )
    statuses = await asyncio.gather(
        *(_admin_call(request, a["labels"]["symbol"]) for a in alerts))
    if any(not 200 <= s < 300 for s in statuses):
        return web.json_response({"error": "admin call failed", "statuses": statuses},
                                 status=502)
    return web.json_response({"recorded": len(alerts)})


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
    async with (
        asyncpg.create_pool(dsn, min_size=1, max_size=10) as pool,
        aiohttp.ClientSession(headers=headers,
                              connector=aiohttp.TCPConnector(limit=100)) as session,
    ):
        await pool.execute(SCHEMA)
        app = web.Application()
        app[POOL] = pool
        app[SESSION] = session
        app[EXCHANGE_URL] = exchange_url.rstrip("/")
        app.router.add_post("/webhooks/alertmanager", webhook)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            await stop.wait()
        finally:
            await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(prog="bench.floor", description=__doc__)
    p.add_argument("--listen", required=True, help="HOST:PORT")
    p.add_argument("--dsn", required=True, help="PostgreSQL DSN")
    p.add_argument("--exchange-url", required=True)
    p.add_argument("--exchange-token", help="sent as a bearer token, like responder does")
    p.add_argument("--uvloop", action="store_true",
                   help="run on uvloop, the event loop responder runs on")
    args = p.parse_args()
    host, _, port = args.listen.rpartition(":")
    served = serve(host, int(port), args.dsn, args.exchange_url, args.exchange_token)
    if args.uvloop:
        import uvloop
        uvloop.run(served)
    else:
        asyncio.run(served)


if __name__ == "__main__":
    main()
