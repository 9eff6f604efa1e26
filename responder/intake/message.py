"""One Kafka message's JSON, whichever topic it came from, or the reason it is poison."""

from __future__ import annotations

from typing import Any

from responder import jsontext
from responder.intake.alertmanager import PayloadError


def decode_message(value: bytes | None, max_bytes: int,
                   max_depth: int | None = jsontext.MAX_DEPTH) -> Any:
    """A message's JSON, or PayloadError with the reason it is poison."""
    if value is None:
        raise PayloadError("", "empty message")
    if len(value) > max_bytes:
        raise PayloadError("", f"message over {max_bytes} bytes")
    try:
        return jsontext.loads(value, max_depth)
    except jsontext.JSONTextError as e:
        raise PayloadError("", f"malformed JSON: {e}") from e
