"""JSON from outside: parse errors of every kind become one ValueError, and nesting is bounded.

``json.loads`` raises RecursionError on a few kilobytes of ``[[[[…`` and the recursive code
that reads a parsed document afterwards can hit the same limit; neither may become a 500 or
a dead consumer task. Nor may a number of thousands of digits: ``json.loads`` turns one
past Python's digit limit into a plain ValueError, and one below it into an integer no
column holds. No field of ours needs more than MAX_INT_DIGITS digits.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32
MAX_INT_DIGITS = 40


class JSONTextError(ValueError):
    """Not JSON, not UTF-8, or nested deeper than MAX_DEPTH."""


def loads(data: bytes | str, max_depth: int | None = MAX_DEPTH) -> Any:
    """The parsed document. ``max_depth=None`` skips the depth walk, for a hot path whose
    own shape checks never recurse (only the decoder's recursion is caught then)."""
    try:
        # The bounded parse costs a Python call per integer: only for a document that holds
        # a long run of digits at all (in a number, or in a string, which is left alone).
        value = (json.loads(data, parse_int=_bounded_int) if _has_long_digits(data)
                 else json.loads(data))
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError and the digit limit
        raise JSONTextError(str(e)[:200]) from e
    except RecursionError:
        raise JSONTextError("nested too deeply") from None
    if max_depth is not None and _may_nest(data, max_depth) and _depth_over(value, max_depth):
        raise JSONTextError(f"nested deeper than {max_depth} levels")
    return value


# Every digit read as "0", then a plain substring search: ten times cheaper than a regex.
_ZEROS = "0" * (MAX_INT_DIGITS + 1)
_TO_ZERO = str.maketrans("123456789", "000000000")
_TO_ZERO_BYTES = bytes.maketrans(b"123456789", b"000000000")


def _has_long_digits(data: bytes | str) -> bool:
    if isinstance(data, str):
        return _ZEROS in data.translate(_TO_ZERO)
    return _ZEROS.encode() in data.translate(_TO_ZERO_BYTES)


def _may_nest(data: bytes | str, max_depth: int) -> bool:
    """False when the text opens too few arrays and objects to nest past max_depth (the
    brackets counted include those inside strings, so this only ever errs towards True)."""
    if isinstance(data, str):
        return data.count("[") + data.count("{") > max_depth
    return data.count(b"[") + data.count(b"{") > max_depth


def _bounded_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _depth_over(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False
