"""The one duration syntax: rules, fixtures and ``replay --since`` all read it here.

Prometheus' spelling, largest unit first: ``90s``, ``2m``, ``1h30m``, ``7d``, ``1w2d``,
``250ms``; a bare number is seconds. Each part may have a decimal fraction.
"""

from __future__ import annotations

import re

UNITS_S = {"w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_NUMBER = r"(\d+(?:\.\d+)?)"
_PATTERN = re.compile("^" + "".join(f"(?:{_NUMBER}{u})?" for u in UNITS_S) + "$")
EXAMPLES = "30s, 2m, 1h30m, 7d"


def parse_duration_s(text: str | float) -> float:
    """Seconds in a duration such as ``1d12h``; ValueError naming the syntax otherwise."""
    if not isinstance(text, str):
        return float(text)
    value = text.strip()
    if re.fullmatch(_NUMBER, value):
        return float(value)
    m = _PATTERN.match(value)
    if m is None or not value:
        raise ValueError(f"not a duration: {text!r} (expected seconds or e.g. {EXAMPLES})")
    return sum(float(g) * size for g, size in zip(m.groups(), UNITS_S.values(), strict=True)
               if g)
