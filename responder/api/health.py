"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from responder.errors import StoreError
from responder.intake.stall import blocking
from responder.state import STATE, DaemonState
from responder.store import health
from responder.store.db import ping


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


SCRAPE_QUERY_S = 1.0


async def readiness(state: DaemonState) -> dict[str, object]:
    store_ok = await ping(state.pool)
    rules_ok = bool(state.rules.rules)
    dead = sorted(state.dead_tasks)
    stalled = dict(sorted(state.stalled.items()))
    return {"ready": store_ok and rules_ok and not state.is_draining and not dead
            and not blocking(stalled),
            "store": store_ok, "rules": len(state.rules.rules),
            "rules_hash": state.rules.bundle_hash, "draining": state.is_draining,
            "dead_tasks": dead, "kafka_stalled": stalled}


async def readyz(request: web.Request) -> web.Response:
    body = await readiness(request.app[STATE])
    return web.json_response(body, status=200 if body["ready"] else 503)


async def _contained(state: DaemonState) -> None:
    """Keys held above their lowest level, per control (0 for a control with none)."""
    try:
        counts = await health.contained(state.pool, SCRAPE_QUERY_S)
    except StoreError:
        return  # the store is down: responder_ready says so; keep the last counts
    for name in {*state.rules.controls, *counts}:
        state.metrics.contained.labels(name).set(counts.get(name, 0))


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.metrics.write_backlog.set(state.writer.backlog)
    state.metrics.ready.set(1 if (await readiness(state))["ready"] else 0)
    await _contained(state)
    data = generate_latest(state.metrics.registry)
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})
