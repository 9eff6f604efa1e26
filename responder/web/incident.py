"""One incident's page: what is held, why, what next; then its evidence and timeline."""

from __future__ import annotations

from aiohttp import web

from responder.state import STATE
from responder.store import incident_page, queries
from responder.store.db import acquire
from responder.web import incident_view
from responder.web.banner import automation
from responder.web.charts import charts
from responder.web.context import WEB
from responder.web.controls import NOTICES
from responder.web.guard import refuse, viewer_page
from responder.web.render import page
from responder.web.session import Session
from responder.web.views import BadQuery, number_param, timeline


@viewer_page
async def incident(request: web.Request, session: Session) -> web.StreamResponse:
    try:
        incident_id = number_param(request.match_info["incident_id"], "incident")
    except BadQuery as e:
        return refuse(request, session, 400, str(e), "invalid_query")
    assert incident_id is not None
    state = request.app[STATE]
    async with acquire(state.pool) as conn:
        found = await queries.incident_timeline(conn, incident_id)
        if found is None:
            return refuse(request, session, 404, f"There is no incident {incident_id}.",
                          "not_found")
        versions = await queries.evidence_versions(conn, incident_id)
        held = await incident_page.held_levels(conn, incident_id)
        alerts = await incident_page.alerts(conn, incident_view.inbox_ids(found["timeline"]))
        snapshots = await incident_page.snapshots(conn, incident_id)
        banner = await automation(conn)
    # The inbox keeps alerts as received; what reaches a page is redacted like the log.
    alerts = [{**a, "alert": state.redactor.value(a["alert"])} for a in alerts]
    view = incident_view.build(found, held, alerts, state.rules, charts(snapshots),
                               state.principals.holding("operator"))
    return page(request.app[WEB].env, "incident.html", session=session,
                incident=found["incident"], steps=found["steps"], timeline=timeline(found),
                versions=versions, view=view, banner=banner,
                can_release=session.principal.can("operator"), nav="incidents",
                notice=NOTICES.get(request.query.get("done", ""), ""))
