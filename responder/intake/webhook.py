"""``POST /webhooks/alertmanager``: authenticate, bound, parse, record durably, then answer."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from responder.errors import StoreUnavailable
from responder.intake.alertmanager import PayloadError, parse_payload
from responder.state import STATE, DaemonState

log = structlog.get_logger("responder.intake")

SOURCE = "alertmanager"


def _refuse(state: DaemonState, status: int, reason: str, message: str) -> web.Response:
    state.metrics.rejected.labels(SOURCE, reason).inc()
    return web.json_response({"error": reason, "message": message}, status=status)


async def alertmanager_webhook(request: web.Request) -> web.Response:
    state = request.app[STATE]
    t0 = time.monotonic()
    if state.is_draining:
        return _refuse(state, 503, "draining", "shutting down; retry another replica")
    if (reason := state.webhook_tokens.check(request.headers.get("Authorization"))) is not None:
        return _refuse(state, 401, reason, "a valid bearer token is required")
    limit = state.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _refuse(state, 413, "body_too_large", f"body over {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _refuse(state, 413, "body_too_large", f"body over {limit} bytes")
    try:
        alerts = parse_payload(body)
    except PayloadError as e:
        reason = "malformed_json" if not e.field else "invalid_field"
        return _refuse(state, 400, reason, str(e))
    try:
        recorded = await state.record(alerts)
    except StoreUnavailable as e:
        log.warning("alerts not recorded; answering 503", error=str(e))
        state.metrics.rejected.labels(SOURCE, "store_unavailable").inc()
        return web.json_response({"error": "store_unavailable",
                                  "message": "not recorded; retry"}, status=503)
    except Exception as e:  # a bug, not bad input: input is validated above
        log.exception("alerts not recorded; answering 500", error=f"{type(e).__name__}: {e}")
        state.metrics.rejected.labels(SOURCE, "internal_error").inc()
        return web.json_response({"error": "internal_error",
                                  "message": "not recorded; retry"}, status=500)
    state.metrics.intake_seconds.observe(time.monotonic() - t0)
    for alert in alerts:
        state.metrics.alerts.labels(SOURCE, alert.status).inc()
    if recorded.redelivered:
        state.metrics.redeliveries.labels(SOURCE).inc(recorded.redelivered)
    return web.json_response({"recorded": recorded.new, "redelivered": recorded.redelivered,
                              "incidents": sorted(recorded.incidents)})
