"""The automation mode and break-glass: held in the store, mirrored here, changed by admins.

Every change is an action-log record naming who and why. Break-glass pauses automation
until its expiry, which takes effect by itself (the policy compares times); the watcher only
records that it ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from responder.engine.policy import GlobalMode, Policy
from responder.engine.storm import StormGuard
from responder.store import modes as automation
from responder.store.actionlog import ChainAppender, Entry
from responder.store.kinds import Kind
from responder.store.types import Conn
from responder.store.writer import Unit

log = structlog.get_logger("responder.engine")

MAX_BREAK_GLASS_S = 24 * 3600  # one call
MAX_BREAK_GLASS_TOTAL_S = 24 * 3600  # from its start, every extension included


@dataclass(frozen=True)
class GlassChange:
    """What a start or extension did: the expiry in force, and why it was refused, if so."""

    until: datetime | None
    extended: bool = False
    refused: str | None = None


def _ended(row: Any, how: str, by: str | None, reason: str | None) -> Entry:
    """The end record, naming the break-glass it ends: who started it, why, and until when."""
    if how == "expired":
        reason = f"its time ran out at {row['break_glass_until'].isoformat()}"
    return Entry(Kind.BREAK_GLASS_ENDED, detail={
        "how": how, "by": by, "reason": reason, "started_by": row["break_glass_by"],
        "started_reason": row["break_glass_reason"],
        "until": row["break_glass_until"].isoformat()})


@dataclass
class Modes:
    """The daemon's copy of the automation row."""

    global_mode: GlobalMode = "enforce"
    break_glass_until: datetime | None = None
    break_glass_by: str | None = None
    break_glass_reason: str | None = None
    max_alert_age_s: float | None = None
    guard: StormGuard | None = None
    revision: int = 0
    """Counts changes of mode or break-glass seen here, however brief: a pause and its end
    between two looks of the resumer (engine/resume.py) still count."""

    async def load(self, conn: Conn) -> None:
        row = await automation.load(conn)
        if row is not None:
            if (row["global_mode"], row["break_glass_until"]) != (self.global_mode,
                                                                  self.break_glass_until):
                self.revision += 1
            self.global_mode = row["global_mode"]
            self.break_glass_until = row["break_glass_until"]
            self.break_glass_by = row["break_glass_by"]
            self.break_glass_reason = row["break_glass_reason"]

    def policy(self) -> Policy:
        return Policy(self.global_mode, self.break_glass_until, self.max_alert_age_s,
                      datetime.now(UTC), self.guard)

    def is_enforcing(self) -> bool:
        """True when automatic calls may go out: enforce, and no break-glass."""
        return self.policy().automatic == "enforce"

    def describe(self) -> dict[str, Any]:
        glass = None
        if self.policy().break_glass:
            assert self.break_glass_until is not None
            glass = {"until": self.break_glass_until.isoformat(), "by": self.break_glass_by,
                     "reason": self.break_glass_reason}
        return {"mode": self.global_mode, "break_glass": glass,
                "max_alert_age_s": self.max_alert_age_s}

    def switch(self, mode: GlobalMode, by: str, reason: str) -> Unit[None]:
        """A writer unit that records and stores a mode switch; applied here on commit."""
        previous = self.global_mode

        async def unit(conn: Conn, chain: ChainAppender) -> None:
            await automation.set_mode(conn, mode)
            chain.add(Entry(Kind.MODE_CHANGED, detail={"from": previous, "to": mode, "by": by,
                                                     "reason": reason}))
            chain.after_commit(lambda: self._set_mode(mode))

        return unit

    def start_break_glass(self, ttl_s: float, by: str, reason: str) -> Unit[GlassChange]:
        """Start break-glass, or extend the running one (recorded as such) as long as it
        stays within MAX_BREAK_GLASS_TOTAL_S of its start; refused past that."""

        async def unit(conn: Conn, chain: ChainAppender) -> GlassChange:
            row = await automation.lock_glass(conn)
            now = datetime.now(UTC)
            until = now + timedelta(seconds=ttl_s)
            running = row["break_glass_until"] is not None and row["break_glass_until"] > now
            if row["break_glass_until"] is not None and not running:
                # Expired, and the watcher has not recorded it yet: the end comes first.
                chain.add(_ended(row, "expired", None, None))
            since = (row["break_glass_since"] or now) if running else now
            if until - since > timedelta(seconds=MAX_BREAK_GLASS_TOTAL_S):
                latest = since + timedelta(seconds=MAX_BREAK_GLASS_TOTAL_S)
                return GlassChange(row["break_glass_until"], refused=(
                    f"break-glass began at {since.isoformat()} and may last"
                    f" {MAX_BREAK_GLASS_TOTAL_S} s in all, to {latest.isoformat()}; end it"
                    " and start a new one to go on"))
            await automation.set_glass(conn, until, since, by, reason)
            detail: dict[str, Any] = {"until": until.isoformat(), "ttl_s": ttl_s, "by": by,
                                      "reason": reason}
            if running:
                detail |= {"from": row["break_glass_until"].isoformat(),
                           "since": since.isoformat()}
            chain.add(Entry(Kind.BREAK_GLASS_EXTENDED if running else Kind.BREAK_GLASS_STARTED,
                            detail=detail))
            chain.after_commit(lambda: self._set_glass(until, by, reason))
            return GlassChange(until, extended=running)

        return unit

    def end_break_glass(self, how: str, by: str | None = None,
                        reason: str | None = None) -> Unit[bool]:
        """Record the end of break-glass (expired or ended by an admin); False if none.

        An expiry ends only a break-glass that has run out: one extended meanwhile, perhaps
        on another replica, goes on.
        """

        async def unit(conn: Conn, chain: ChainAppender) -> bool:
            row = await automation.lock_glass(conn)
            until = row["break_glass_until"]
            if until is None or (how == "expired" and until > datetime.now(UTC)):
                return False
            await automation.clear_glass(conn)
            chain.add(_ended(row, how, by, reason))
            chain.after_commit(lambda: self._set_glass(None, None, None))
            return True

        return unit

    def _set_mode(self, mode: GlobalMode) -> None:
        self.global_mode = mode
        self.revision += 1

    def _set_glass(self, until: datetime | None, by: str | None, reason: str | None) -> None:
        self.revision += 1
        self.break_glass_until, self.break_glass_by, self.break_glass_reason = until, by, reason

    def expired(self) -> bool:
        return (self.break_glass_until is not None
                and self.break_glass_until <= datetime.now(UTC))
