"""The aiohttp application: routes, request metrics and body limits."""

from __future__ import annotations

import structlog
from aiohttp import web

from responder import correlation
from responder.api import actions, controls, health, modes
from responder.intake.events import events_webhook
from responder.intake.webhook import alertmanager_webhook
from responder.state import STATE, DaemonState
from responder.web import install as install_web

log = structlog.get_logger("responder.http")


@web.middleware
async def count_requests(request: web.Request, handler: actions.Handler) -> web.StreamResponse:
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    metrics = request.app[STATE].metrics
    try:
        response = await handler(request)
    except web.HTTPException as e:
        metrics.requests.labels(name, str(e.status)).inc()
        raise
    metrics.requests.labels(name, str(response.status)).inc()
    return response


@web.middleware
async def correlate(request: web.Request, handler: actions.Handler) -> web.StreamResponse:
    """Give each request a correlation id: on its log lines, its records and its answer."""
    cid = correlation.accept(request.headers.get(correlation.HEADER))
    request[correlation.REQUEST_KEY] = cid
    with structlog.contextvars.bound_contextvars(correlation_id=cid):
        try:
            response = await handler(request)
        except web.HTTPException as e:
            e.headers[correlation.HEADER] = cid
            raise
    response.headers[correlation.HEADER] = cid
    return response


def build_app(state: DaemonState) -> web.Application:
    app = web.Application(client_max_size=state.settings.max_body_bytes,
                          middlewares=[correlate, count_requests])
    app[STATE] = state
    app.router.add_post("/webhooks/alertmanager", alertmanager_webhook)
    app.router.add_post("/webhooks/events", events_webhook)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/-/healthy", health.healthz)  # Prometheus' own spelling
    app.router.add_get("/-/ready", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    app.router.add_get("/v1/actions", actions.list_actions)
    app.router.add_get("/v1/incidents/{incident_id}", actions.get_incident)
    app.router.add_get("/v1/incidents/{incident_id}/evidence", actions.get_evidence)
    app.router.add_get("/v1/controls", controls.list_controls)
    app.router.add_post("/v1/controls/{control}/{key}/release", controls.release)
    app.router.add_post("/v1/controls/{control}/{key}/contain", controls.contain)
    app.router.add_get("/v1/release-requests", controls.list_requests)
    app.router.add_post("/v1/release-requests/{request_id}/approve", controls.approve)
    app.router.add_post("/-/reload", modes.reload_rules)
    app.router.add_get("/v1/mode", modes.get_mode)
    app.router.add_post("/v1/mode", modes.set_mode)
    app.router.add_post("/v1/break-glass", modes.start_break_glass)
    app.router.add_delete("/v1/break-glass", modes.end_break_glass)
    install_web(app, state)
    return app
