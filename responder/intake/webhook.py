"""``POST /webhooks/alertmanager``: authenticate, bound, parse, record durably, then answer."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from responder.auth import challenge
from responder.correlation import REQUEST_KEY
from responder.errors import StoreRefused, StoreUnavailable
from responder.intake.alertmanager import PayloadError, parse_payload
from responder.intake.refusals import BodyRefused, read_within, refuse
from responder.state import STATE

log = structlog.get_logger("responder.intake")

SOURCE = "alertmanager"


async def alertmanager_webhook(request: web.Request) -> web.Response:
    state = request.app[STATE]
    t0 = time.monotonic()
    if state.is_draining:
        return refuse(state, SOURCE, 503, "draining", "shutting down; retry another replica")
    if (reason := state.webhook_tokens.check(request.headers.get("Authorization"))) is not None:
        return refuse(state, SOURCE, 401, reason, "a valid bearer token is required",
                      challenge(reason))
    try:
        body = await read_within(request, state.settings.web.max_body_bytes)
    except BodyRefused as e:
        return e.answer(state, SOURCE)
    try:
        alerts = parse_payload(body)
    except PayloadError as e:
        reason = "malformed_json" if not e.field else "invalid_field"
        return refuse(state, SOURCE, 400, reason, str(e))
    try:
        recorded = await state.pipeline.record(alerts, correlation_id=request[REQUEST_KEY])
    except StoreRefused as e:
        return refuse(state, SOURCE, 400, "unstorable", str(e))
    except StoreUnavailable as e:
        log.warning("alerts not recorded; answering 503", error=str(e))
        return refuse(state, SOURCE, 503, "store_unavailable", "not recorded; retry")
    except Exception as e:  # a bug, not bad input: input is validated above
        log.exception("alerts not recorded; answering 500", error=f"{type(e).__name__}: {e}")
        return refuse(state, SOURCE, 500, "internal_error", "not recorded; retry")
    log.info("alerts recorded", source=SOURCE, new=recorded.new,
             redelivered=recorded.redelivered, incidents=sorted(recorded.incidents),
             steps=len(recorded.steps))
    state.metrics.intake_seconds.observe(time.monotonic() - t0)
    for alert in alerts:
        state.metrics.alerts.labels(SOURCE, alert.status).inc()
    if recorded.redelivered:
        state.metrics.redeliveries.labels(SOURCE).inc(recorded.redelivered)
    return web.json_response({"recorded": recorded.new, "redelivered": recorded.redelivered,
                              "incidents": sorted(recorded.incidents)})
