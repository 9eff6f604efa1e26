"""``/login`` and ``/logout``: a token typed once becomes a signed session cookie.

The login form carries its own CSRF nonce (a short-lived cookie echoed in the form), so a
foreign site cannot log a browser in under someone else's name. Failed logins are counted
by reason and logged with the client address, never with what was typed.
"""

from __future__ import annotations

import secrets

import structlog
from aiohttp import web

from responder.auth import token_sha256
from responder.state import STATE
from responder.store import sessions
from responder.store.db import acquire
from responder.web.context import WEB, WebContext
from responder.web.guard import checked_form, current, form_for
from responder.web.render import page
from responder.web.session import COOKIE, LOGIN_COOKIE, Session

log = structlog.get_logger("responder.web")

MAX_TOKEN_CHARS = 512
LOGIN_NONCE_S = 3600


def _set_cookie(response: web.StreamResponse, ctx: WebContext, name: str, value: str,
                max_age_s: int) -> None:
    response.set_cookie(name, value, max_age=max_age_s, path="/", httponly=True,
                        samesite="Strict", secure=ctx.secure_cookies)


def _login_page(request: web.Request, status: int = 200, message: str = "") -> web.Response:
    ctx = request.app[WEB]
    nonce = secrets.token_urlsafe(32)
    response = page(ctx.env, "login.html", status=status, session=None, csrf=nonce,
                    message=message)
    _set_cookie(response, ctx, LOGIN_COOKIE, nonce, LOGIN_NONCE_S)
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    if await current(request) is not None:
        raise web.HTTPSeeOther("/")
    return _login_page(request)


async def login(request: web.Request) -> web.StreamResponse:
    ctx = request.app[WEB]
    state = request.app[STATE]
    form = await checked_form(request, request.cookies.get(LOGIN_COOKIE, ""), None)
    if isinstance(form, web.Response):
        ctx.logins.labels("bad_csrf").inc()
        return form
    token = form.get("token")
    if not isinstance(token, str) or not token.strip() or len(token) > MAX_TOKEN_CHARS:
        ctx.logins.labels("missing_token").inc()
        return _login_page(request, 400, "Enter your API token.")
    who = state.principals.authenticate(f"Bearer {token.strip()}")
    if isinstance(who, str):
        ctx.logins.labels(who).inc()
        log.warning("web login refused", reason=who, remote=request.remote)
        return _login_page(request, 401, "That token is not accepted.")
    ctx.logins.labels("ok").inc()
    log.info("web login", principal=who.name, role=who.role, remote=request.remote)
    _, cookie = ctx.sessions.issue(who, token_sha256(token.strip()))
    response = web.HTTPSeeOther("/")
    _set_cookie(response, ctx, COOKIE, cookie, int(ctx.sessions.ttl_s))
    response.del_cookie(LOGIN_COOKIE, path="/")
    raise response


@form_for("viewer")
async def logout(request: web.Request, session: Session, _: object) -> web.StreamResponse:
    ctx = request.app[WEB]
    async with acquire(request.app[STATE].pool) as conn:
        await sessions.revoke(conn, session.sid, session.expires_at)
    ctx.sessions.revoke(session)
    log.info("web logout", principal=session.principal.name)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response

