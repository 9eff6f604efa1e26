"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from responder.state import STATE
from responder.store.db import ping


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    store_ok = await ping(state.pool)
    rules_ok = bool(state.rules.rules)
    ready = store_ok and rules_ok and not state.is_draining
    body = {"ready": ready, "store": store_ok, "rules": len(state.rules.rules),
            "rules_hash": state.rules.bundle_hash, "draining": state.is_draining}
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.metrics.write_backlog.set(state.writer.backlog)
    data = generate_latest(state.metrics.registry)
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})
