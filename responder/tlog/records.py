"""A record's bytes: RFC 8785 (JCS) JSON, which other tools and languages reproduce."""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson
import rfc8785

SAFE_INT = 2**53 - 1


class _Walk:
    """Whether a value needs the slow RFC 8785 path: a float that ES6 and Python's repr spell
    differently (very large or small), or a key outside the BMP (JCS sorts keys by UTF-16
    code units, Python by code points, and the two orders differ only there)."""

    def __init__(self) -> None:
        self.slow = False

    def safe(self, value: Any) -> Any:
        """The value with what RFC 8785 cannot spell (NaN, huge ints, other types) as text."""
        kind = type(value)
        if kind is str or value is None or kind is bool:
            return value
        if kind is dict or isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                key = k if type(k) is str else str(k)
                if not self.slow and not key.isascii() and max(map(ord, key)) > 0xFFFF:
                    self.slow = True
                out[key] = self.safe(v)
            return out
        if kind is list or kind is tuple:
            return [self.safe(v) for v in value]
        if kind is int or isinstance(value, int):
            return value if -SAFE_INT <= value <= SAFE_INT else str(value)
        if kind is float:
            if not math.isfinite(value):
                return str(value)
            if value.is_integer() and -SAFE_INT <= value <= SAFE_INT:
                return int(value)  # ES6 spells 3.0 as 3, as Python spells the int
            if not 1e-4 <= abs(value) < 1e16:
                self.slow = True  # where Python's repr turns to an exponent, ES6 does not
            return value
        return str(value)


def record_text(record: Mapping[str, Any]) -> str:
    """A record's canonical JSON (RFC 8785), the bytes its Merkle leaf hashes.

    Otherwise RFC 8785 and Python's sorted, compact, non-ASCII-escaping JSON are the same
    bytes (tests/test_merkle.py proves it on generated values), and the
    latter is an order of magnitude faster.
    """
    if plain(record, SAFE_INT, integral_floats=False):
        # Nothing for the walk to change: only a key outside the BMP could still make RFC
        # 8785's order differ, and then the text holds a character outside it.
        with contextlib.suppress(orjson.JSONEncodeError):
            text = orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()
            if text.isascii() or not _ASTRAL.search(text):
                return text
    walk = _Walk()
    value = walk.safe(record)
    if walk.slow:
        return rfc8785.dumps(value).decode()
    return plain_json(value)


_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


def plain(value: Any, int_bound: int, *, integral_floats: bool = True) -> bool:
    """Whether a value holds only dicts, lists, tuples, text, bools, None, ints within
    ``int_bound`` and floats that Python and orjson spell alike (no exponent, no NaN;
    integral ones such as 3.0 only if ``integral_floats``), each of exactly those types.
    Keys are not looked at: orjson refuses any but text."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is dict:
            extend(item.values())
        elif kind is list or kind is tuple:
            extend(item)
        elif kind is int:
            if not -int_bound <= item <= int_bound:
                return False
        elif kind is float:
            if item.is_integer():
                if not integral_floats or not abs(item) < 1e16:  # Python: 1e+16
                    return False
            elif not 1e-4 <= abs(item) < 1e16:
                return False
        else:
            return False
    return True


def plain_json(value: Any) -> str:
    """Sorted, compact, non-ASCII-escaping JSON of plain values (dicts with text keys, lists,
    text, bools, None, ints within 64 bits, floats whose repr has no exponent), in the
    standard library's exact bytes. orjson spells those the same (tests/test_merkle.py checks
    it), so it writes them; what it refuses (a lone surrogate, nesting past its limit) goes
    to the standard library, which has the last word."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
