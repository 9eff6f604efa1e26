"""``/v1/mode`` and ``/v1/break-glass``: what automation may do, switched by admins."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from responder import jsontext
from responder.api.actions import require
from responder.auth import Principal
from responder.engine.modes import MAX_BREAK_GLASS_S
from responder.engine.policy import GLOBAL_MODES
from responder.errors import RuleError
from responder.state import STATE


class _Bad(ValueError):
    pass


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = jsontext.loads(await request.read())
    except jsontext.JSONTextError as e:
        raise _Bad("the body must be a JSON object") from e
    if not isinstance(body, dict):
        raise _Bad("the body must be a JSON object")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 1000:
        raise _Bad("reason: a non-empty string of at most 1000 characters is required")
    return body


def _bad(message: str) -> web.Response:
    return web.json_response({"error": "invalid_field", "message": message}, status=400)


@require("viewer")
async def get_mode(request: web.Request, _: Principal) -> web.StreamResponse:
    return web.json_response(request.app[STATE].modes.describe())


@require("admin")
async def set_mode(request: web.Request, principal: Principal) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        body = await _body(request)
    except _Bad as e:
        return _bad(str(e))
    mode = body.get("mode")
    if mode not in GLOBAL_MODES:
        return _bad(f"mode: one of {', '.join(GLOBAL_MODES)}")
    await state.writer.submit(state.modes.switch(mode, principal.name, body["reason"].strip()))
    return web.json_response(state.modes.describe())


@require("admin")
async def start_break_glass(request: web.Request, principal: Principal) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        body = await _body(request)
    except _Bad as e:
        return _bad(str(e))
    ttl = body.get("ttl_s")
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 0 < ttl <= (
            MAX_BREAK_GLASS_S):
        return _bad(f"ttl_s: a number of seconds from 1 to {MAX_BREAK_GLASS_S}")
    await state.writer.submit(state.modes.start_break_glass(float(ttl), principal.name,
                                                            body["reason"].strip()))
    return web.json_response(state.modes.describe())


@require("admin")
async def end_break_glass(request: web.Request, principal: Principal) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        body = await _body(request)
    except _Bad as e:
        return _bad(str(e))
    ended = await state.writer.submit(state.modes.end_break_glass(
        "ended", principal.name, body["reason"].strip()))
    if not ended:
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
