"""``/v1/controls``: what is contained, and the operator's release and manual containment."""

from __future__ import annotations

from aiohttp import web

from responder.api import bodies
from responder.api.actions import require
from responder.api.bodies import ContainChange, ReleaseChange, with_body
from responder.auth import Principal
from responder.engine.manual import (
    UNKEYED,
    Kind,
    Manual,
    ManualChange,
    ManualRefused,
    apply_manual,
    approve_release,
)
from responder.intake.alertmanager import PayloadError, check_text
from responder.params import plain_int
from responder.state import STATE, DaemonState
from responder.store import levels, queries
from responder.store.db import acquire

# The web page's forms take the same limits.
MAX_REASON, MAX_TICKET = bodies.MAX_REASON, bodies.MAX_TICKET


STATUS = {
    "invalid_field": 400, "invalid_id": 400, "invalid_key": 400, "invalid_level": 400,
    "same_person": 403,
    "unknown_control": 404, "not_found": 404,
    "already_contained": 409, "not_contained": 409, "one_step_at_a_time": 409,
    "stale_request": 409, "not_pending": 409, "key_busy": 409,
    "target_failed": 502,
}
"""The HTTP status of each reason a manual change is refused for (engine/manual.py)."""


def refusal_status(e: ManualRefused) -> int:
    return STATUS.get(e.code, 409)


def manual(state: DaemonState) -> Manual:
    """What a person's change needs, taken from the running daemon."""
    s = state.settings

    def touch(incidents: set[int]) -> None:
        if state.evidence is not None:
            state.evidence.touch(incidents)

    return Manual(rules=lambda: state.rules, pool=state.pool, writer=state.writer,
                  client=state.client, locks=state.executor.locks, metrics=state.metrics,
                  touch=touch, wait_s=s.steps.manual_wait_s, deadline_s=s.steps.deadline_s,
                  read_back_s=s.steps.read_back_deadline_s, approval_ttl_s=s.release_approval_ttl_s)


def _refuse(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@require("viewer")
async def list_controls(request: web.Request, _: Principal) -> web.StreamResponse:
    async with acquire(request.app[STATE].pool) as conn:
        rows = await levels.held_controls(conn)
    controls = [{
        "control": r["control"], "key": r["key"] or UNKEYED, "level": r["level"],
        "since": r["updated_at"].isoformat(), "set_by": r["set_by"], "set_kind": r["set_kind"],
        "reason": r["reason"], "ticket": r["ticket"], "incident_id": r["incident_id"],
        # Held levels were all answered 2xx; "verified" says whether a read-back agreed
        # (null when the control declares no read).
        "confirmed": True,
        "verified": r["verified"],
    } for r in rows]
    return web.json_response({"controls": controls})


def _path_part(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    try:
        check_text(value, name)
    except PayloadError as e:
        raise ManualRefused("invalid_field", str(e)) from None
    return value


async def _change(request: web.Request, principal: Principal, kind: Kind,
                  body: ReleaseChange | ContainChange) -> web.Response:
    state = request.app[STATE]
    try:
        change = ManualChange(
            kind=kind,
            control=_path_part(request, "control"),
            key=_path_part(request, "key"),
            to_level=body.to_level,
            reason=body.reason,
            ticket=body.ticket if isinstance(body, ReleaseChange) else None,
            principal=principal,
        )
        result = await apply_manual(manual(state), change)
    except ManualRefused as e:
        state.metrics.rejected.labels("controls", e.code).inc()
        return _refuse(refusal_status(e), e.code, str(e))
    return web.json_response(result, status=202 if result.get("status") == "pending_approval"
                             else 200)


@require("viewer")
async def list_requests(request: web.Request, _: Principal) -> web.StreamResponse:
    async with acquire(request.app[STATE].pool) as conn:
        rows = await queries.pending_releases(conn)
    return web.json_response({"requests": [
        {**dict(r), "key": r["key"] or UNKEYED, "requested_at": r["requested_at"].isoformat(),
         "expires_at": r["expires_at"].isoformat()} for r in rows]})


@require("operator")
async def approve(request: web.Request, principal: Principal) -> web.StreamResponse:
    state = request.app[STATE]
    request_id = plain_int(request.match_info["request_id"])
    if request_id is None:
        state.metrics.rejected.labels("controls", "invalid_id").inc()
        return _refuse(400, "invalid_id", "the request id is a number")
    try:
        result = await approve_release(manual(state), request_id, principal)
    except ManualRefused as e:
        state.metrics.rejected.labels("controls", e.code).inc()
        return _refuse(refusal_status(e), e.code, str(e))
    return web.json_response(result)


@require("operator")
@with_body(ReleaseChange)
async def release(request: web.Request, principal: Principal,
                  body: ReleaseChange) -> web.StreamResponse:
    return await _change(request, principal, "release", body)


@require("operator")
@with_body(ContainChange)
async def contain(request: web.Request, principal: Principal,
                  body: ContainChange) -> web.StreamResponse:
    return await _change(request, principal, "contain", body)
