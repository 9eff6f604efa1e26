"""``/v1/mode`` and ``/v1/break-glass``: what automation may do, switched by admins."""

from __future__ import annotations

from aiohttp import web

from responder.api.actions import require
from responder.api.bodies import BreakGlassEnd, BreakGlassStart, ModeChange, with_body
from responder.auth import Principal
from responder.errors import RuleError
from responder.state import STATE


@require("viewer")
async def get_mode(request: web.Request, _: Principal) -> web.StreamResponse:
    return web.json_response(request.app[STATE].modes.describe())


@require("admin")
@with_body(ModeChange)
async def set_mode(request: web.Request, principal: Principal,
                   body: ModeChange) -> web.StreamResponse:
    state = request.app[STATE]
    await state.writer.submit(state.modes.switch(body.mode, principal.name, body.reason))
    return web.json_response(state.modes.describe())


@require("admin")
@with_body(BreakGlassStart)
async def start_break_glass(request: web.Request, principal: Principal,
                            body: BreakGlassStart) -> web.StreamResponse:
    state = request.app[STATE]
    change = await state.writer.submit(state.modes.start_break_glass(
        body.ttl_s, principal.name, body.reason))
    if change.refused is not None:
        state.metrics.rejected.labels("api", "break_glass_cap").inc()
        return web.json_response({"error": "break_glass_cap", "message": change.refused},
                                 status=409)
    return web.json_response(state.modes.describe())


@require("admin")
@with_body(BreakGlassEnd)
async def end_break_glass(request: web.Request, principal: Principal,
                          body: BreakGlassEnd) -> web.StreamResponse:
    state = request.app[STATE]
    ended = await state.writer.submit(state.modes.end_break_glass(
        "ended", principal.name, body.reason))
    if not ended:
        state.metrics.rejected.labels("api", "not_active").inc()
        return web.json_response({"error": "not_active", "message": "no break-glass to end"},
                                 status=409)
    return web.json_response(state.modes.describe())


@require("admin")
async def reload_rules(request: web.Request, principal: Principal) -> web.StreamResponse:
    """Reload the rule table; a bad table is refused with file:line problems and the last
    good table stays in force."""
    state = request.app[STATE]
    assert state.reload is not None
    try:
        table = await state.reload(principal.name)
    except RuleError as e:
        return web.json_response({"error": "invalid_rules", "kept": state.rules.bundle_hash,
                                  "problems": [str(p) for p in e.problems]}, status=400)
    return web.json_response({"rules": len(table.rules), "rules_hash": table.bundle_hash})
