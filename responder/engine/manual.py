"""Changes people make: a release lowers a level, a manual containment raises one.

Both go through the target under the same per-key lock as automatic steps, with an intent
recorded before the call and the outcome after, naming who, why and (for a release) the
ticket. A release moves one stop at a time; it never happens automatically.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from responder.actions.admin_http import CallFailed
from responder.auth import Principal
from responder.engine import audit
from responder.errors import ActionPermanentError, ResponderError
from responder.rules.table import Control
from responder.state import DaemonState
from responder.store.actionlog import ChainAppender, Entry
from responder.store.claims import KeyBusy, hold_key
from responder.store.db import Conn
from responder.store.releases import end_pending

Kind = Literal["release", "contain"]
UNKEYED = "-"  # how an unkeyed control's key is written in a URL or on the command line

HELD_SQL = ("SELECT level, rank, incident_id, containment FROM control_levels"
            " WHERE control = $1 AND key = $2")

SET_SQL = """
INSERT INTO control_levels (control, key, level, rank, incident_id, set_by, set_kind, reason,
                            ticket, verified)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (control, key) DO UPDATE SET level = EXCLUDED.level, rank = EXCLUDED.rank,
    set_by = EXCLUDED.set_by, set_kind = EXCLUDED.set_kind, reason = EXCLUDED.reason,
    ticket = EXCLUDED.ticket, verified = EXCLUDED.verified, updated_at = now()
"""


class ManualRefused(ResponderError):
    """A manual change that is not allowed; ``status`` and ``code`` go back to the caller."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class ManualChange:
    kind: Kind
    control: str
    key: str
    to_level: str
    reason: str
    ticket: str | None
    principal: Principal
    approved_by: Principal | None = None
    expected_from: str | None = None
    """For an approved release: the level it was requested from, which must still hold."""
    expected_containment: int | None = None
    """For an approved release: the containment it was requested for, which must be the one
    held still (the key was not released and contained again since)."""
    request_id: int | None = None
    """For an approved release: the request it carries out."""


def _resolve(state: DaemonState, change: ManualChange) -> tuple[Control, str]:
    control = state.rules.controls.get(change.control)
    if control is None:
        raise ManualRefused(404, "unknown_control", f"no control named {change.control!r}")
    if control.is_keyed:
        if control.key_pattern.fullmatch(change.key) is None:
            raise ManualRefused(400, "invalid_key",
                                f"key does not match {control.key_pattern.pattern}")
        key = change.key
    elif change.key != UNKEYED:
        raise ManualRefused(400, "invalid_key", f"{control.name} is not keyed: use {UNKEYED!r}")
    else:
        key = ""
    if change.to_level not in control.levels:
        raise ManualRefused(400, "invalid_level",
                            f"to_level must be one of {', '.join(control.levels)}")
    return control, key


def _check(control: Control, change: ManualChange, current: str,
           containment: int | None) -> None:
    if (change.expected_containment is not None
            and containment != change.expected_containment):
        raise ManualRefused(409, "stale_request",
                            f"{control.name} was released or contained again since the"
                            " release was requested; request it again")
    if change.expected_from is not None and current != change.expected_from:
        raise ManualRefused(409, "stale_request",
                            f"{control.name} is at {current} now, not {change.expected_from}"
                            " as when the release was requested; request it again")
    current_rank, to_rank = control.rank(current), control.rank(change.to_level)
    if change.kind == "contain":
        if to_rank <= current_rank:
            raise ManualRefused(409, "already_contained",
                                f"{control.name} is at {current}; contain only raises")
        return
    if current_rank == 0:
        raise ManualRefused(409, "not_contained", f"{control.name} is at its lowest level")
    allowed = control.release_next(current)
    if change.to_level != allowed:
        raise ManualRefused(409, "one_step_at_a_time",
                            f"{control.name} is at {current}: release to {allowed} first")


@contextlib.asynccontextmanager
async def _across_replicas(state: DaemonState, control: str, key: str) -> AsyncIterator[None]:
    try:
        async with hold_key(state.pool, control, key, state.settings.steps.manual_wait_s):
            yield
    except KeyBusy as e:
        raise ManualRefused(409, "key_busy", f"{e}; try again shortly") from None


async def apply_manual(state: DaemonState, change: ManualChange) -> dict[str, Any]:
    """Apply the change through the target; ManualRefused if it is not allowed or fails."""
    control, key = _resolve(state, change)
    # The key across replicas first: it waits for live claims to end, and a step claimed
    # while it was recorded needs this replica's key lock to finish, so holding that lock
    # while waiting would only wait out the person's own timeout.
    async with _across_replicas(state, control.name, key), \
            state.executor.key_lock(control.name, key):
        async with state.pool.acquire() as conn:
            held = await conn.fetchrow(HELD_SQL, control.name, key)
        current = held["level"] if held is not None else control.levels[0]
        incident_id = held["incident_id"] if held is not None else None
        containment = held["containment"] if held is not None else None
        _check(control, change, current, containment)
        if (change.kind == "release" and control.two_person_release
                and change.approved_by is None):
            return await _request_release(state, change, key, current, incident_id,
                                          containment)
        idempotency_key = f"responder-manual-{uuid.uuid4()}"
        detail = {"by": change.principal.name, "role": change.principal.role,
                  "reason": change.reason, "ticket": change.ticket, "from": current,
                  "to": change.to_level, "idempotency_key": idempotency_key,
                  "approved_by": change.approved_by.name if change.approved_by else None,
                  "containment": containment, "request_id": change.request_id}
        await state.writer.submit(_append(Entry(f"{change.kind}_intent", incident_id=incident_id,
                                                control=control.name, key=key, detail=detail)))
        try:
            call = await state.client.apply(control, key, change.to_level, idempotency_key,
                                            state.settings.steps.deadline_s, audit.for_person(
                                                change.reason, change.ticket, incident_id,
                                                change.principal.name))
        except (CallFailed, ActionPermanentError) as e:
            record = e.record.to_json() if isinstance(e, CallFailed) else None
            await state.writer.submit(_append(Entry(
                f"{change.kind}_failed", incident_id=incident_id, control=control.name, key=key,
                detail={**detail, "error": str(e), "call": record})))
            message = f"the target did not confirm: {e}; the level is unchanged"
            raise ManualRefused(502, "target_failed", message) from e
        verified: bool | None = None
        outcome: dict[str, object] = {**detail, "call": call.to_json()}
        if control.is_readable:
            verified, observed, reads = await state.client.verify(
                control, key, change.to_level, state.settings.steps.read_back_deadline_s)
            outcome["read_back"] = [r.to_json() for r in reads]
            if not verified:
                message = (f"read-back: the target reports {observed or 'no level'}, not"
                           f" {change.to_level}; the held level is unchanged")
                await state.writer.submit(_append(Entry(
                    f"{change.kind}_failed", incident_id=incident_id, control=control.name,
                    key=key, detail={**outcome, "error": message})))
                raise ManualRefused(502, "target_failed", message)
        state.metrics.actions.labels(control.name, change.kind).inc()
        closed = await state.writer.submit(_set_level(control, key, change, incident_id,
                                                      {**outcome, "verified": verified},
                                                      verified))
    if state.evidence is not None:
        state.evidence.touch(closed | ({incident_id} if incident_id is not None else set()))
    return {"control": control.name, "key": key or UNKEYED, "from": current,
            "level": change.to_level, "by": change.principal.name}


async def _request_release(state: DaemonState, change: ManualChange, key: str, current: str,
                           incident_id: int | None,
                           containment: int | None) -> dict[str, Any]:
    expires_at = datetime.now(UTC) + timedelta(seconds=state.settings.release_approval_ttl_s)
    assert change.ticket is not None

    async def unit(conn: Conn, chain: ChainAppender) -> int:
        request_id: int = await conn.fetchval(
            "INSERT INTO release_requests (control, key, from_level, to_level, reason, ticket,"
            " requested_by, expires_at, containment) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
            " RETURNING id",
            change.control, key, current, change.to_level, change.reason, change.ticket,
            change.principal.name, expires_at, containment)
        chain.add(Entry("release_requested", incident_id=incident_id, control=change.control,
                        key=key, detail={"request_id": request_id, "by": change.principal.name,
                                         "reason": change.reason, "ticket": change.ticket,
                                         "from": current, "to": change.to_level,
                                         "containment": containment,
                                         "expires_at": expires_at.isoformat()}))
        return request_id

    request_id = await state.writer.submit(unit)
    return {"status": "pending_approval", "request_id": request_id,
            "expires_at": expires_at.isoformat(), "control": change.control,
            "key": key or UNKEYED, "from": current, "level": change.to_level,
            "containment": containment, "by": change.principal.name}


APPROVE_SQL = """
UPDATE release_requests r SET status = 'approved', approved_by = $2, decided_at = now()
WHERE r.id = $1 AND r.status = 'pending' AND r.expires_at > now()
  -- Approve only what was asked: the containment it names, still at the level it was
  -- requested from (the key may have been released, or raised by a new incident, since).
  AND EXISTS (SELECT 1 FROM control_levels c
              WHERE c.control = r.control AND c.key = r.key AND c.level = r.from_level
                AND c.containment IS NOT DISTINCT FROM r.containment)
RETURNING control, key, from_level, to_level, reason, ticket, requested_by, containment
"""


async def approve_release(state: DaemonState, request_id: int,
                          approver: Principal) -> dict[str, Any]:
    """A different operator approves a pending release, which is then applied."""
    async with state.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT status, requested_by, expires_at FROM"
                                  " release_requests WHERE id = $1", request_id)
    if row is None:
        raise ManualRefused(404, "not_found", f"no release request {request_id}")
    if row["requested_by"] == approver.name:
        raise ManualRefused(403, "same_person",
                            "two-person release: a different operator must approve")

    async def unit(conn: Conn, chain: ChainAppender) -> Any:
        approved = await conn.fetchrow(APPROVE_SQL, request_id, approver.name)
        if approved is not None:
            chain.add(Entry("release_approved", control=approved["control"],
                            key=approved["key"], detail={"request_id": request_id,
                                                         "by": approver.name,
                                                         "requested_by": approved["requested_by"],
                                                         "containment": approved["containment"]}))
        return approved

    approved = await state.writer.submit(unit)
    if approved is None:
        if row["status"] == "pending" and row["expires_at"] > datetime.now(UTC):
            raise ManualRefused(409, "stale_request",
                                f"release request {request_id} was made from a level that no"
                                " longer holds; request it again")
        raise ManualRefused(409, "not_pending",
                            f"release request {request_id} is {row['status']} or has expired;"
                            " the control stays contained")
    change = ManualChange("release", approved["control"], approved["key"] or UNKEYED,
                          approved["to_level"], approved["reason"], approved["ticket"],
                          Principal(approved["requested_by"], "operator"), approved_by=approver,
                          expected_from=approved["from_level"],
                          expected_containment=approved["containment"], request_id=request_id)
    return await apply_manual(state, change)


EXPIRE_SQL = """
UPDATE release_requests SET status = 'expired', decided_at = now()
WHERE status = 'pending' AND expires_at <= now()
RETURNING id, control, key, requested_by
"""


async def expire_requests(conn: Conn, chain: ChainAppender) -> int:
    """A writer unit: expire pending releases past their TTL; each stays contained."""
    rows = await conn.fetch(EXPIRE_SQL)
    for r in rows:
        chain.add(Entry("release_expired", control=r["control"], key=r["key"],
                        detail={"request_id": r["id"], "requested_by": r["requested_by"],
                                "note": "not approved in time; the control stays contained"}))
    return len(rows)


def _append(entry: Entry) -> Any:
    async def unit(conn: Conn, chain: ChainAppender) -> None:
        chain.add(entry)

    return unit


def _set_level(control: Control, key: str, change: ManualChange, incident_id: int | None,
               detail: Mapping[str, object], verified: bool | None) -> Any:
    async def unit(conn: Conn, chain: ChainAppender) -> set[int]:
        """The incidents this change closed (their bundles change too)."""
        closed: list[Any] = []
        await conn.execute(SET_SQL, control.name, key, change.to_level,
                           control.rank(change.to_level), incident_id, change.principal.name,
                           "release" if change.kind == "release" else "manual", change.reason,
                           change.ticket, verified)
        chain.add(Entry("release" if change.kind == "release" else "manual_contain",
                        incident_id=incident_id, control=control.name, key=key, detail=detail))
        # Released or contained again: any other request for the key is for what was before.
        await end_pending(conn, chain, control.name, key,
                          "released" if change.kind == "release" else "contained again",
                          incident_id)
        if change.kind == "release":
            # A released key must be contained again if its problem comes back: close the
            # open incidents that contained it, so a new alert opens a new one and acts.
            closed = await conn.fetch(CLOSE_INCIDENTS_SQL, control.name, key)
            for row in closed:
                chain.add(Entry("incident_closed", incident_id=row["id"],
                                detail={"by": change.principal.name, "reason": "released",
                                        "ticket": change.ticket}))
        return {row["id"] for row in closed}

    return unit


CLOSE_INCIDENTS_SQL = """
UPDATE incidents SET status = 'resolved', resolved_at = now()
WHERE status = 'open' AND id IN (SELECT incident_id FROM steps WHERE control = $1 AND key = $2)
RETURNING id
"""
