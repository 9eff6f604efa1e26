"""Numbers and times from query strings, paths and headers, refused cleanly when unusable.

``str.isdigit`` accepts "²" and PostgreSQL refuses ids past int64 and dates past year 9999:
each of those was a 500 before it was a 400.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

MAX_ID = 2**62
_DECIMAL = re.compile(r"[0-9]{1,19}")


def plain_int(value: str, maximum: int = MAX_ID) -> int | None:
    """An ASCII decimal from 0 to maximum, or None."""
    if not _DECIMAL.fullmatch(value):
        return None
    number = int(value)
    return number if number <= maximum else None


def utc_time(value: str, *, naive_is_utc: bool = False) -> datetime:
    """An ISO 8601 time in UTC; ValueError if unreadable, without an offset (unless naive
    times are taken as UTC), or outside what PostgreSQL's timestamptz holds here."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        if not naive_is_utc:
            raise ValueError("the time needs a UTC offset")
        parsed = parsed.replace(tzinfo=UTC)
    if not 1 < parsed.year < 9999:
        raise ValueError("the year must be between 2 and 9998")
    return parsed.astimezone(UTC)
