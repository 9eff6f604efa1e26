"""The controls page: what is held, by whom, and the release form with its two-person flow.

Releases and approvals go through the engine's own functions (apply_manual,
approve_release); this module only reads the form and shows the result.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from responder.api.controls import MAX_REASON, MAX_TICKET, manual, refusal_status
from responder.engine.manual import (
    UNKEYED,
    ManualChange,
    ManualRefused,
    apply_manual,
    approve_release,
)
from responder.params import plain_int
from responder.state import STATE
from responder.store import levels, queries
from responder.store.db import acquire
from responder.web.banner import automation
from responder.web.context import WEB
from responder.web.guard import form_for, viewer_page
from responder.web.render import page
from responder.web.session import Session

BACK = re.compile(r"/incidents/[0-9]{1,19}")
NOTICES = {
    "released": "Released. The new level is shown below.",
    "requested": "Release requested: another operator must approve it before it is applied.",
    "approved": "Approved and released. The new level is shown below.",
}


async def _render(request: web.Request, session: Session, status: int = 200,
                  error: str = "", notice: str = "") -> web.Response:
    state = request.app[STATE]
    async with acquire(state.pool) as conn:
        held = await levels.held_controls(conn)
        pending = await queries.pending_releases(conn)
        banner = await automation(conn)
    rows = []
    for r in held:
        control = state.rules.controls.get(r["control"])
        rows.append({**dict(r), "key_shown": r["key"] or UNKEYED,
                     "next": control.release_next(r["level"]) if control else None,
                     "two_person": bool(control and control.two_person_release)})
    return page(request.app[WEB].env, "controls.html", status=status, session=session,
                rows=rows, pending=[{**dict(p), "key_shown": p["key"] or UNKEYED}
                                    for p in pending],
                can_release=session.principal.can("operator"), error=error, notice=notice,
                nav="controls", banner=banner)


@viewer_page
async def controls(request: web.Request, session: Session) -> web.StreamResponse:
    return await _render(request, session, notice=NOTICES.get(request.query.get("done", ""), ""))


def _field(form: MultiDictProxy[Any], name: str, limit: int) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ManualRefused("invalid_field", f"{name}: required")
    if len(value) > limit:
        raise ManualRefused("invalid_field", f"{name}: at most {limit} characters")
    if any(ord(ch) < 32 and ch not in "\t\r\n" for ch in value):
        # PostgreSQL refuses NUL in text; the record would fail after the call otherwise.
        raise ManualRefused("invalid_field", f"{name}: control characters are not allowed")
    return value.strip()


async def _refused(request: web.Request, session: Session, e: ManualRefused) -> web.Response:
    request.app[STATE].metrics.rejected.labels("web", e.code).inc()
    return await _render(request, session, status=refusal_status(e), error=str(e))


@form_for("operator")
async def release(request: web.Request, session: Session,
                  form: MultiDictProxy[Any]) -> web.StreamResponse:
    try:
        change = ManualChange(
            kind="release", control=_field(form, "control", 200),
            key=_field(form, "key", 200), to_level=_field(form, "to_level", 64),
            reason=_field(form, "reason", MAX_REASON), ticket=_field(form, "ticket", MAX_TICKET),
            principal=session.principal)
        result = await apply_manual(manual(request.app[STATE]), change)
    except ManualRefused as e:
        return await _refused(request, session, e)
    done = "requested" if result.get("status") == "pending_approval" else "released"
    back = form.get("back")
    # Only back to an incident page of this site: the field is the form's, not trusted.
    if isinstance(back, str) and BACK.fullmatch(back):
        raise web.HTTPSeeOther(f"{back}?done={done}")
    raise web.HTTPSeeOther(f"/controls?done={done}")


@form_for("operator")
async def approve(request: web.Request, session: Session,
                  form: MultiDictProxy[Any]) -> web.StreamResponse:
    raw = form.get("request_id")
    try:
        request_id = plain_int(raw) if isinstance(raw, str) else None
        if request_id is None:
            return await _refused(request, session, ManualRefused(
                "invalid_id", "request_id: a number"))
        await approve_release(manual(request.app[STATE]), request_id,
                              session.principal)
    except ManualRefused as e:
        return await _refused(request, session, e)
    raise web.HTTPSeeOther("/controls?done=approved")
