"""The automation state every page shows at its top: read from the store, not from this
replica's copy, so each replica's page says the same."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from responder.store import automation as automation_row
from responder.store.types import Conn
from responder.web.render import age


@dataclass(frozen=True)
class Banner:
    state: str  # enforce, dry_run, paused, break_glass
    headline: str
    detail: str

    @property
    def tone(self) -> str:
        return "ok" if self.state == "enforce" else "bad"


async def automation(conn: Conn, now: datetime | None = None) -> Banner:
    row = await automation_row.read(conn)
    now = now or datetime.now(UTC)
    if row is None:
        return Banner("enforce", "Automation: enforce", "responder contains by itself")
    until = row["break_glass_until"]
    if until is not None and until > now:
        left = age(until, now).removeprefix("in ")
        return Banner("break_glass", f"BREAK-GLASS: automation paused, {left} left",
                      f"by {row['break_glass_by']} until {until:%H:%M} UTC:"
                      f" {row['break_glass_reason']}. Alerts are recorded; nothing is"
                      " contained automatically.")
    mode = row["global_mode"]
    if mode == "dry_run":
        return Banner("dry_run", "DRY-RUN: nothing is contained automatically",
                      "responder records what it would do and does not call the target.")
    if mode == "paused":
        return Banner("paused", "PAUSED: nothing is contained automatically",
                      "alerts are recorded; an admin resumes with POST /v1/mode.")
    return Banner("enforce", "Automation: enforce", "responder contains by itself.")
