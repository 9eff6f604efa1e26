"""Changes people make: a release lowers a level, a manual containment raises one.

Both go through the target like automatic steps (engine/levels.py), with an intent
recorded before the call and the outcome after, naming who, why and (for a release) the
ticket. A release moves one stop at a time; it never happens automatically.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from responder.actions.admin_http import AdminClient
from responder.auth import Principal
from responder.engine import audit, levels
from responder.engine.levels import KeyLocks, Outcome
from responder.errors import ResponderError
from responder.metrics import Metrics
from responder.rules.table import Control, RuleTable
from responder.store import releases
from responder.store.actionlog import ChainAppender, Entry
from responder.store.claims import KeyBusy
from responder.store.kinds import Kind as EntryKind
from responder.store.levels import held_level, set_level
from responder.store.types import Conn, Pool
from responder.store.writer import Unit, Writer

Kind = Literal["release", "contain"]
UNKEYED = "-"  # how an unkeyed control's key is written in a URL or on the command line

INTENT = {"release": EntryKind.RELEASE_INTENT, "contain": EntryKind.CONTAIN_INTENT}
FAILED = {"release": EntryKind.RELEASE_FAILED, "contain": EntryKind.CONTAIN_FAILED}
DONE = {"release": EntryKind.RELEASE, "contain": EntryKind.MANUAL_CONTAIN}


class ManualRefused(ResponderError):
    """A manual change that is not allowed; ``code`` says why (the API maps it to a status)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Manual:
    """What a person's change needs from the running daemon."""

    rules: Callable[[], RuleTable]
    pool: Pool
    writer: Writer
    client: AdminClient
    locks: KeyLocks
    metrics: Metrics
    touch: Callable[[set[int]], None]
    """Tell the evidence which incidents changed."""
    wait_s: float
    """How long to wait for the key across replicas."""
    deadline_s: float
    read_back_s: float
    approval_ttl_s: float


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


def _resolve(rules: RuleTable, change: ManualChange) -> tuple[Control, str]:
    control = rules.controls.get(change.control)
    if control is None:
        raise ManualRefused("unknown_control", f"no control named {change.control!r}")
    if control.is_keyed:
        if control.key_pattern.fullmatch(change.key) is None:
            raise ManualRefused("invalid_key", f"key does not match {control.key_pattern.pattern}")
        key = change.key
    elif change.key != UNKEYED:
        raise ManualRefused("invalid_key", f"{control.name} is not keyed: use {UNKEYED!r}")
    else:
        key = ""
    if change.to_level not in control.levels:
        raise ManualRefused("invalid_level", f"to_level must be one of {', '.join(control.levels)}")
    return control, key


def _check(control: Control, change: ManualChange, current: str,
           containment: int | None) -> None:
    if (change.expected_containment is not None
            and containment != change.expected_containment):
        raise ManualRefused("stale_request",
                            f"{control.name} was released or contained again since the"
                            " release was requested; request it again")
    if change.expected_from is not None and current != change.expected_from:
        raise ManualRefused("stale_request",
                            f"{control.name} is at {current} now, not {change.expected_from}"
                            " as when the release was requested; request it again")
    current_rank, to_rank = control.rank(current), control.rank(change.to_level)
    if change.kind == "contain":
        if to_rank <= current_rank:
            raise ManualRefused("already_contained",
                                f"{control.name} is at {current}; contain only raises")
        return
    if current_rank == 0:
        raise ManualRefused("not_contained", f"{control.name} is at its lowest level")
    allowed = control.release_next(current)
    if change.to_level != allowed:
        raise ManualRefused("one_step_at_a_time",
                            f"{control.name} is at {current}: release to {allowed} first")


async def apply_manual(m: Manual, change: ManualChange) -> dict[str, Any]:
    """Apply the change through the target; ManualRefused if it is not allowed or fails."""
    control, key = _resolve(m.rules(), change)
    try:
        async with levels.take_key(m.pool, m.locks, control.name, key, m.wait_s):
            return await _apply_held(m, change, control, key)
    except KeyBusy as e:
        raise ManualRefused("key_busy", f"{e}; try again shortly") from None


async def _apply_held(m: Manual, change: ManualChange, control: Control,
                      key: str) -> dict[str, Any]:
    held = await held_level(m.pool, control.name, key)
    current = held.level if held is not None else control.levels[0]
    incident_id = held.incident_id if held is not None else None
    containment = held.containment if held is not None else None
    _check(control, change, current, containment)
    if change.kind == "release" and control.two_person_release and change.approved_by is None:
        return await _request_release(m, change, key, current, incident_id, containment)
    idempotency_key = f"responder-manual-{uuid.uuid4()}"
    detail = {"by": change.principal.name, "role": change.principal.role,
              "reason": change.reason, "ticket": change.ticket, "from": current,
              "to": change.to_level, "idempotency_key": idempotency_key,
              "approved_by": change.approved_by.name if change.approved_by else None,
              "containment": containment, "request_id": change.request_id}
    target = levels.Change(control, key, change.to_level, idempotency_key, m.deadline_s,
                           audit.for_person(change.reason, change.ticket, incident_id,
                                            change.principal.name),
                           m.read_back_s if control.is_readable else None)

    def failed(extra: dict[str, object]) -> Unit[None]:
        return _append(Entry(FAILED[change.kind], incident_id=incident_id, control=control.name,
                             key=key, detail={**extra}))

    def record(outcome: Outcome) -> Unit[object]:
        if outcome.error is not None:
            call = outcome.failed_call
            return failed({**detail, "error": str(outcome.error),
                           "call": call.to_json() if call else None})
        assert outcome.call is not None
        done: dict[str, object] = {**detail, "call": outcome.call.to_json()}
        if control.is_readable:
            done["read_back"] = [r.to_json() for r in outcome.reads]
            if not outcome.verified:
                return failed({**done, "error": _not_read_back(outcome, change.to_level)})
        m.metrics.actions.labels(control.name, change.kind).inc()
        return _set_level(m, control, key, change, incident_id,
                          {**done, "verified": outcome.verified}, outcome.verified)

    intent = _append(Entry(INTENT[change.kind], incident_id=incident_id, control=control.name,
                           key=key, detail=detail))
    outcome, _ = await levels.apply(m.client, m.writer, target, record, intent=intent)
    if outcome.error is not None:
        message = f"the target did not confirm: {outcome.error}; the level is unchanged"
        raise ManualRefused("target_failed", message) from outcome.error
    if control.is_readable and not outcome.verified:
        raise ManualRefused("target_failed", _not_read_back(outcome, change.to_level))
    return {"control": control.name, "key": key or UNKEYED, "from": current,
            "level": change.to_level, "by": change.principal.name}


def _not_read_back(outcome: Outcome, level: str) -> str:
    return (f"read-back: the target reports {outcome.observed or 'no level'}, not {level};"
            " the held level is unchanged")


async def _request_release(m: Manual, change: ManualChange, key: str, current: str,
                           incident_id: int | None,
                           containment: int | None) -> dict[str, Any]:
    expires_at = datetime.now(UTC) + timedelta(seconds=m.approval_ttl_s)
    ticket = change.ticket
    assert ticket is not None

    async def unit(conn: Conn, chain: ChainAppender) -> int:
        request_id = await releases.request_release(
            conn, change.control, key, current, change.to_level, change.reason, ticket,
            change.principal.name, expires_at, containment)
        chain.add(Entry(EntryKind.RELEASE_REQUESTED, incident_id=incident_id,
                        control=change.control, key=key,
                        detail={"request_id": request_id, "by": change.principal.name,
                                "reason": change.reason, "ticket": change.ticket,
                                "from": current, "to": change.to_level,
                                "containment": containment,
                                "expires_at": expires_at.isoformat()}))
        return request_id

    request_id = await m.writer.submit(unit)
    return {"status": "pending_approval", "request_id": request_id,
            "expires_at": expires_at.isoformat(), "control": change.control,
            "key": key or UNKEYED, "from": current, "level": change.to_level,
            "containment": containment, "by": change.principal.name}


async def approve_release(m: Manual, request_id: int, approver: Principal) -> dict[str, Any]:
    """A different operator approves a pending release, which is then applied."""
    asked = await releases.request_status(m.pool, request_id)
    if asked is None:
        raise ManualRefused("not_found", f"no release request {request_id}")
    if asked.requested_by == approver.name:
        raise ManualRefused("same_person", "two-person release: a different operator must approve")

    async def unit(conn: Conn, chain: ChainAppender) -> releases.Approved | None:
        approved = await releases.approve(conn, request_id, approver.name)
        if approved is not None:
            chain.add(Entry(EntryKind.RELEASE_APPROVED, control=approved.control,
                            key=approved.key, detail={"request_id": request_id,
                                                      "by": approver.name,
                                                      "requested_by": approved.requested_by,
                                                      "containment": approved.containment}))
        return approved

    approved = await m.writer.submit(unit)
    if approved is None:
        if asked.status == "pending" and asked.expires_at > datetime.now(UTC):
            raise ManualRefused("stale_request",
                                f"release request {request_id} was made from a level that no"
                                " longer holds; request it again")
        raise ManualRefused("not_pending",
                            f"release request {request_id} is {asked.status} or has expired;"
                            " the control stays contained")
    change = ManualChange("release", approved.control, approved.key or UNKEYED,
                          approved.to_level, approved.reason, approved.ticket,
                          Principal(approved.requested_by, "operator"), approved_by=approver,
                          expected_from=approved.from_level,
                          expected_containment=approved.containment, request_id=request_id)
    return await apply_manual(m, change)


async def expire_requests(conn: Conn, chain: ChainAppender) -> int:
    """A writer unit: expire pending releases past their TTL; each stays contained."""
    expired = await releases.expire(conn)
    for r in expired:
        chain.add(Entry(EntryKind.RELEASE_EXPIRED, control=r.control, key=r.key,
                        detail={"request_id": r.id, "requested_by": r.requested_by,
                                "note": "not approved in time; the control stays contained"}))
    return len(expired)


def _append(entry: Entry) -> Unit[None]:
    async def unit(conn: Conn, chain: ChainAppender) -> None:
        chain.add(entry)

    return unit


def _set_level(m: Manual, control: Control, key: str, change: ManualChange,
               incident_id: int | None, detail: dict[str, object],
               verified: bool | None) -> Unit[object]:
    async def unit(conn: Conn, chain: ChainAppender) -> None:
        is_release = change.kind == "release"
        await set_level(conn, control.name, key, change.to_level, control.rank(change.to_level),
                        incident_id, change.principal.name, "release" if is_release else "manual",
                        change.reason, change.ticket, verified)
        chain.add(Entry(DONE[change.kind], incident_id=incident_id, control=control.name,
                        key=key, detail=detail))
        # Released or contained again: any other request for the key is for what was before.
        await releases.end_pending(conn, chain, control.name, key,
                                   "released" if is_release else "contained again",
                                   incident_id)
        closed: list[int] = []
        if is_release:
            # A released key must be contained again if its problem comes back: close the
            # open incidents that contained it, so a new alert opens a new one and acts.
            closed = await releases.close_incidents(conn, control.name, key)
            for incident in closed:
                chain.add(Entry(EntryKind.INCIDENT_CLOSED, incident_id=incident,
                                detail={"by": change.principal.name, "reason": "released",
                                        "ticket": change.ticket}))
        # Their bundles change too; told once committed, even if the caller has gone.
        touched = set(closed) | ({incident_id} if incident_id is not None else set())
        chain.after_commit(lambda: m.touch(touched))

    return unit
