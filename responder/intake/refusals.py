"""What the webhook endpoints share: a counted refusal, and reading a body within a limit."""

from __future__ import annotations

from aiohttp import web

from responder.state import DaemonState


def refuse(state: DaemonState, source: str, status: int, reason: str,
           message: str) -> web.Response:
    """A clear error answer, counted by source and reason."""
    state.metrics.rejected.labels(source, reason).inc()
    return web.json_response({"error": reason, "message": message}, status=status)


async def read_within(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is over the limit (declared or actually sent)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None
