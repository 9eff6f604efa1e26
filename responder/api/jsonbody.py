"""Decode a ``/v1`` request body: JSON whose every failure is a refusal, never a 500.

``json.loads`` turns an integer literal of more than 4,300 digits into a plain ValueError
(Python's guard against quadratic int parsing) and accepts ``NaN`` and ``Infinity``; nothing
an operator sends needs either, so numbers are bounded in length and must be finite.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_NUMBER_CHARS = 40


class BodyError(ValueError):
    """The body is not a JSON document responder accepts; ``code`` names why."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise BodyError("number_too_long", f"a number has more than {MAX_NUMBER_CHARS} digits")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise BodyError("number_too_long", f"a number has more than {MAX_NUMBER_CHARS} digits")
    value = float(text)
    if not math.isfinite(value):
        raise BodyError("number_out_of_range", "a number is too large to be finite")
    return value


def _constant(name: str) -> Any:
    raise BodyError("malformed_json", f"{name} is not a JSON number")


def decode(data: bytes) -> Any:
    """The parsed document, or BodyError."""
    try:
        return json.loads(data, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except BodyError:
        raise
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError too
        raise BodyError("malformed_json", "the body must be a JSON object") from e
