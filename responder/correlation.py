"""Correlation ids: one per delivery, carried by its log lines, records and steps."""

from __future__ import annotations

import re
import uuid

from aiohttp import web

HEADER = "X-Correlation-Id"
REQUEST_KEY = web.RequestKey("correlation_id", str)
"""Where the id is kept on an aiohttp request."""
_SHAPE = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def accept(offered: str | None) -> str:
    """The caller's id when it is a plain token of sane length (so a sender can follow its
    own request through responder), else a fresh one: a hostile value never reaches logs."""
    if offered is not None and _SHAPE.fullmatch(offered):
        return offered
    return new_id()
