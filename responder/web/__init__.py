"""The operator web page, served by the daemon at ``/``: server-rendered, no build step."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import Counter

from responder.state import DaemonState
from responder.web import controls, incident, live, login, views
from responder.web.context import WEB, WebContext
from responder.web.render import make_env
from responder.web.session import Sessions

STATIC = Path(__file__).resolve().parent / "static"


def install(app: web.Application, state: DaemonState) -> None:
    """Add the page's routes and shared objects to the daemon's application."""
    s = state.settings
    public = urlsplit(s.web.public_url) if s.web.public_url else None
    secret = s.web.session_secret.get_secret_value().encode() if s.web.session_secret else None
    app[WEB] = WebContext(
        env=make_env(),
        sessions=Sessions(secret, s.web.session_ttl_s),
        logins=Counter("responder_web_logins", "Web page logins by outcome (ok, bad_token,"
                       " missing_token, bad_csrf)", ["outcome"], registry=state.metrics.registry),
        secure_cookies=public is not None and public.scheme == "https",
        public_origin=f"{public.scheme}://{public.netloc}" if public else None,
    )
    app.router.add_get("/", views.incidents)
    app.router.add_get("/incidents/{incident_id}", incident.incident)
    app.router.add_get("/events/incidents", live.incident_events)
    app.router.add_get("/incidents/{incident_id}/evidence", views.evidence)
    app.router.add_get("/actions", views.actions)
    app.router.add_get("/controls", controls.controls)
    app.router.add_post("/controls/release", controls.release)
    app.router.add_post("/controls/approve", controls.approve)
    app.router.add_get("/login", login.login_form)
    app.router.add_post("/login", login.login)
    app.router.add_post("/logout", login.logout)
    app.router.add_static("/static", STATIC)
