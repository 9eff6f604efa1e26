"""The simulated exchange's forensic endpoints, which runbook 3.1 and 3.3 read before anyone
touches the system: Kafka offsets, the ledger entry range, configs, lease logs, and a
"preserve" call that snapshots WAL segments and the engine state and answers a reference."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

STATUS: dict[str, dict[str, Any]] = {
    "/admin/status/kafka-offsets": {"group": "matching-engine", "partitions": {
        "orders-0": {"committed": 1_048_576, "end": 1_048_590},
        "orders-1": {"committed": 998_112, "end": 998_112}}},
    "/admin/status/ledger-range": {"first_entry": 88_120_001, "last_entry": 88_431_977,
                                   "engine_seq": 1_048_576, "ledger_seq": 1_048_570},
    "/admin/status/leases": {"engine": [
        {"holder": "engine-a", "symbol_shard": 3, "epoch": 41, "renewed": "2026-11-30T22:09:58Z"},
        {"holder": "engine-b", "symbol_shard": 3, "epoch": 42, "renewed": "2026-11-30T22:10:01Z"}]},
    "/admin/config": {"version": "cfg-2026-11-28.3", "risk_limits": "rl-77",
                      "settlement_slo_s": {"t2": 30, "t3": 120}},
}
PRESERVE = "/admin/forensics/preserve"


def add_routes(app: web.Application, authorised: Callable[[web.Request], bool],
               read: Callable[[web.Request], None] = lambda request: None) -> None:
    """GETs of the status documents (each told to ``read``) and the POST that preserves,
    behind the admin token."""
    preserved: dict[str, dict[str, Any]] = {}

    async def status(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        read(request)
        return web.json_response(STATUS[request.path])

    async def preserve(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        key = request.headers.get("Idempotency-Key") or str(len(preserved))
        if key not in preserved:
            try:
                asked = await request.json()
            except json.JSONDecodeError:
                asked = None
            reference = f"exchange-preserve-{len(preserved):06d}"
            preserved[key] = {
                "reference": reference, "asked": asked,
                "preserved": ["wal-segments", "engine-snapshot", "lease-log", "configs"],
                "sha256": hashlib.sha256(json.dumps([reference, asked]).encode()).hexdigest()}
        return web.json_response(preserved[key])

    for path in STATUS:
        app.router.add_get(path, status)
    app.router.add_post(PRESERVE, preserve)
