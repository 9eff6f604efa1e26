"""What the web page's handlers share: templates, sessions and the login metric."""

from __future__ import annotations

from dataclasses import dataclass, field

import jinja2
from aiohttp import web
from prometheus_client import Counter

from responder.web.session import Sessions


@dataclass
class LiveStreams:
    """How many incident-list event streams are open on this replica."""

    streams: int = 0


@dataclass(frozen=True)
class WebContext:
    env: jinja2.Environment
    sessions: Sessions
    logins: Counter
    secure_cookies: bool
    public_origin: str | None  # scheme://host[:port] of RESPONDER_PUBLIC_URL, if set
    live: LiveStreams = field(default_factory=LiveStreams)


WEB = web.AppKey("web", WebContext)
