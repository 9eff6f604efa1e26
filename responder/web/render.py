"""Templates with HTML autoescaping, times shown in UTC with their age, security headers.

The templates are ours; label values, reasons and tickets only ever arrive as context
values, which Jinja escapes, never as template source.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self';"
                               " script-src 'self'; connect-src 'self';"
                               " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes browsers send Origin: null
    "Cache-Control": "no-store",
}


def as_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def utc(value: object) -> str:
    """``2026-11-23 08:11:33 UTC``, or the value as given if it is not a time."""
    when = as_time(value)
    if when is None:
        return "" if value is None else str(value)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(value: object, now: datetime | None = None) -> str:
    """How long ago (or how far ahead) a time is, in its largest unit."""
    when = as_time(value)
    if when is None:
        return ""
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    ahead, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            text = f"{seconds // size} {unit}"
            break
    else:
        text = f"{seconds} s"
    return f"in {text}" if ahead else f"{text} ago"


def pretty(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def make_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("responder.web", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(utc=utc, age=age, pretty=pretty)
    return env


def page(env: jinja2.Environment, template: str, status: int = 200,
         **context: Any) -> web.Response:
    """A rendered page with the headers every page carries."""
    body = env.get_template(template).render(**context)
    return web.Response(text=body, content_type="text/html", charset="utf-8", status=status,
                        headers=HEADERS)
