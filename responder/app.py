"""The aiohttp application: routes, request metrics and body limits."""

from __future__ import annotations

import structlog
from aiohttp import web

from responder import correlation
from responder.api import actions, health, openapi, routes
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
    except Exception:  # aiohttp answers 500 for it; the metric must say so too
        metrics.requests.labels(name, "500").inc()
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
    app = web.Application(client_max_size=state.settings.web.max_body_bytes,
                          middlewares=[correlate, count_requests])
    app[STATE] = state
    app.router.add_post("/webhooks/alertmanager", alertmanager_webhook)
    app.router.add_post("/webhooks/events", events_webhook)
    for op in routes.OPERATIONS:
        app.router.add_route(op.method, op.path, op.handler)
    app.router.add_get(openapi.PATH, openapi.serve(openapi.document(routes.OPERATIONS)))
    app.router.add_get("/-/healthy", health.healthz)  # Prometheus' own spelling
    app.router.add_get("/-/ready", health.readyz)
    install_web(app, state)
    return app
