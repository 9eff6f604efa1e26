"""What the webhook endpoints share: a counted refusal, and reading a body within a limit."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from responder.state import DaemonState


def refuse(state: DaemonState, source: str, status: int, reason: str,
           message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """A clear error answer, counted by source and reason."""
    state.metrics.rejected.labels(source, reason).inc()
    return web.json_response({"error": reason, "message": message}, status=status,
                             headers=headers)


class BodyRefused(Exception):
    """The body cannot be read: too large, or its Content-Encoding does not decode."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message

    def answer(self, state: DaemonState, source: str) -> web.Response:
        return refuse(state, source, self.status, self.reason, self.message)


async def read_within(request: web.Request, limit: int) -> bytes:
    """The body, decoded; BodyRefused when it is over the limit (declared, actually sent or
    once decompressed) or is not in the encoding it declares."""
    too_large = BodyRefused(413, "body_too_large", f"body over {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    except (web.RequestPayloadError, HttpProcessingError) as e:
        # A body that is not the gzip or deflate it claims to be, or a chunked body that
        # breaks off: aiohttp raises from inside read(), where it would be a 500.
        encoding = request.headers.get("Content-Encoding", "")
        raise BodyRefused(400, "bad_encoding",
                          f"the body does not decode as {encoding!r:.40}") from e
