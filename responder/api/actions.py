"""``GET /v1/actions`` and ``GET /v1/incidents/{id}``: the action log, for viewers."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from responder.api.bodies import BodyRefused, refused
from responder.api.filters import ActionQuery
from responder.auth import Principal, Role, challenge
from responder.errors import StoreUnavailable
from responder.params import plain_int
from responder.state import STATE
from responder.store import queries
from responder.store.db import acquire

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PrincipalHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


_ROLES: dict[str, Role] = {}


def _name(handler: Callable[..., Any]) -> str:
    return f"{handler.__module__}.{handler.__qualname__}"


def role_of(handler: Handler) -> Role | None:
    """The role a handler requires (through ``require``), or None if it is open."""
    return _ROLES.get(_name(handler))


def require(role: Role) -> Callable[[PrincipalHandler], Handler]:
    """Authenticate the caller: 401 without a valid token, 403 without the role."""

    def wrap(handler: PrincipalHandler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            state = request.app[STATE]
            who = state.principals.authenticate(request.headers.get("Authorization"))
            if isinstance(who, str):
                state.metrics.rejected.labels("api", who).inc()
                return web.json_response({"error": who, "message": "a valid bearer token is"
                                          " required"}, status=401, headers=challenge(who))
            if not who.can(role):
                state.metrics.rejected.labels("api", "forbidden_role").inc()
                return web.json_response({"error": "forbidden_role",
                                          "message": f"{who.name} is {who.role}; this needs"
                                          f" {role}"}, status=403)
            try:
                return await handler(request, who)
            except StoreUnavailable:
                # An outage, not the request: say so, and let the caller retry.
                state.metrics.rejected.labels("api", "store_unavailable").inc()
                return web.json_response({"error": "store_unavailable", "message":
                                          "the store is unavailable; retry shortly"},
                                         status=503, headers={"Retry-After": "5"})

        _ROLES[_name(guarded)] = role
        return guarded

    return wrap


@require("viewer")
async def list_actions(request: web.Request, _: Principal) -> web.StreamResponse:
    try:
        q = ActionQuery.from_query(request.query)
    except BodyRefused as e:
        return refused(request, e)
    filters = queries.ActionFilter(
        rule_id=q.rule, control=q.control, incident_id=q.incident, kind=q.kind,
        correlation_id=q.correlation_id, since=q.since, until=q.until, after=q.after,
        limit=q.limit)
    async with acquire(request.app[STATE].pool) as conn:
        records = await queries.list_actions(conn, filters)
    next_after = records[-1]["seq"] if len(records) == filters.limit else None
    return _json({"records": records, "next_after": next_after})


@require("viewer")
async def get_incident(request: web.Request, _: Principal) -> web.StreamResponse:
    incident_id = plain_int(request.match_info["incident_id"])
    if incident_id is None:
        return refused(request, BodyRefused("invalid_query", "incident id must be an integer"))
    async with acquire(request.app[STATE].pool) as conn:
        incident = await queries.incident_timeline(conn, incident_id)
    if incident is None:
        return web.json_response({"error": "not_found"}, status=404)
    return _json(incident)


def _json(data: Any) -> web.Response:
    return web.json_response(data, dumps=lambda d: json.dumps(d, default=str))


@require("viewer")
async def get_evidence(request: web.Request, _: Principal) -> web.StreamResponse:
    """The incident's sealed bundle (latest, or ?version=N) with its digest."""
    incident_id = plain_int(request.match_info["incident_id"])
    raw_version = request.query.get("version")
    version = plain_int(raw_version, 2**31 - 1) if raw_version is not None else None
    if incident_id is None or (raw_version is not None and version is None):
        return refused(request, BodyRefused("invalid_query",
                                            "incident id and version are integers"))
    async with acquire(request.app[STATE].pool) as conn:
        row = await queries.evidence_bundle(conn, incident_id, version)
    if row is None:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response({"incident_id": incident_id, "version": row["version"],
                              "digest": row["digest"], "prev_digest": row["prev_digest"],
                              "bundle": json.loads(row["body"])})
