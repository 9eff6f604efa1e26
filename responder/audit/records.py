"""A record's bytes: RFC 8785 (JCS) JSON, which other tools and languages reproduce."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import rfc8785

SAFE_INT = 2**53 - 1


def _jcs_safe(value: Any) -> Any:
    """JSON values RFC 8785 can spell: numbers it cannot (NaN, huge ints) become strings."""
    if isinstance(value, Mapping):
        return {str(k): _jcs_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jcs_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if -SAFE_INT <= value <= SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def record_text(record: Mapping[str, Any]) -> str:
    """A record's canonical JSON (RFC 8785), the bytes its Merkle leaf hashes."""
    return rfc8785.dumps(_jcs_safe(dict(record))).decode()
