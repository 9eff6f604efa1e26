"""Who may see a page or post a form: a session for every page, a role and a CSRF token
for every form."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from responder.auth import Role
from responder.state import STATE
from responder.store import sessions
from responder.store.db import acquire
from responder.web.context import WEB
from responder.web.render import page
from responder.web.session import COOKIE, Session, same_token

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SessionHandler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
FormHandler = Callable[[web.Request, Session, MultiDictProxy[Any]],
                       Awaitable[web.StreamResponse]]


async def current(request: web.Request) -> Session | None:
    """The request's session: signed, unexpired, its principal still configured, and not
    logged out on any replica."""
    state = request.app[STATE]
    session = request.app[WEB].sessions.check(request.cookies.get(COOKIE), state.principals)
    if session is None:
        return None
    async with acquire(state.pool) as conn:
        if await sessions.is_revoked(conn, session.sid):
            return None
    return session


def refuse(request: web.Request, session: Session | None, status: int, message: str,
           code: str) -> web.Response:
    """An error page; the refusal is counted like the API's."""
    request.app[STATE].metrics.rejected.labels("web", code).inc()
    return page(request.app[WEB].env, "error.html", status=status, session=session,
                message=message, status_code=status)


def viewer_page(handler: SessionHandler) -> Handler:
    """A page for anyone logged in; without a session, the login page."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        session = await current(request)
        if session is None:
            raise web.HTTPSeeOther("/login")
        return await handler(request, session)

    return guarded


async def read_form(request: web.Request) -> MultiDictProxy[Any] | None:
    """The posted form, or None if the body is not a readable form."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    try:
        return await request.post()
    except (ValueError, UnicodeDecodeError, web.HTTPException):
        return None


def _same_origin(request: web.Request) -> bool:
    """A browser names the page a form came from; a cross-site form is refused outright."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == request.app[WEB].public_origin:
        return True
    return origin.partition("://")[2] == request.headers.get("Host", "")


async def checked_form(request: web.Request, expected_csrf: str,
                       session: Session | None) -> MultiDictProxy[Any] | web.Response:
    """The form if it is same-origin, readable and carries the expected CSRF token; else the
    refusal page."""
    if not _same_origin(request):
        return refuse(request, session, 403, "Forms are accepted from this site only.",
                      "foreign_origin")
    form = await read_form(request)
    if form is None:
        return refuse(request, session, 400, "The form could not be read.", "malformed_form")
    if not same_token(expected_csrf, form.get("csrf")):
        return refuse(request, session, 403, "The form is stale or was not sent from this"
                      " site; reload the page and try again.", "bad_csrf")
    return form


def form_for(role: Role) -> Callable[[FormHandler], Handler]:
    """A form POST: 401 without a session, 403 for a foreign origin or a bad CSRF token or
    without the role, 400 for an unreadable body."""

    def wrap(handler: FormHandler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = await current(request)
            if session is None:
                return refuse(request, None, 401, "Your session has ended; log in again.",
                              "no_session")
            form = await checked_form(request, session.csrf, session)
            if isinstance(form, web.Response):
                return form
            if not session.principal.can(role):
                return refuse(request, session, 403, f"{session.principal.name} is"
                              f" {session.principal.role}; this needs {role}.", "forbidden_role")
            return await handler(request, session, form)

        return guarded

    return wrap
