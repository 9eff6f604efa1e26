"""The read-only pages: incidents, one incident's timeline, its evidence, the action log."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from responder.params import plain_int, utc_time
from responder.state import STATE
from responder.store import queries
from responder.store.db import acquire
from responder.web.action_groups import group
from responder.web.banner import automation
from responder.web.context import WEB
from responder.web.guard import refuse, viewer_page
from responder.web.render import page
from responder.web.session import Session

PAGE_SIZE = 50
MAX_ID = 2**62
MAX_FILTER_CHARS = 200
OUTCOMES = ("applied", "failed", "already_contained")
SUMMARY_FIELDS = ("status", "level", "from", "to", "by", "approved_by", "ticket", "reason",
                  "verified", "error", "request_id", "sink", "labels")


class BadQuery(ValueError):
    """A query parameter that cannot be used; the page answers 400 naming it."""


def number_param(value: str | None, name: str) -> int | None:
    """A positive id from the query or path; None when absent, BadQuery when not one."""
    if value is None or value == "":
        return None
    number = plain_int(value, MAX_ID)
    if number is None:
        raise BadQuery(f"{name}: expected a positive integer")
    return number


def _time(value: str | None, name: str) -> datetime | None:
    """ISO 8601; without an offset (as a browser's datetime-local sends it) it is UTC."""
    if value is None or value == "":
        return None
    try:
        return utc_time(value, naive_is_utc=True)
    except ValueError as e:
        raise BadQuery(f"{name}: expected a time such as 2026-11-23T08:00") from e


def _text(value: str | None, name: str) -> str | None:
    if value is None or value.strip() == "":
        return None
    if len(value) > MAX_FILTER_CHARS:
        raise BadQuery(f"{name}: at most {MAX_FILTER_CHARS} characters")
    if not value.isprintable():
        # PostgreSQL refuses NUL in text; no name or kind has control characters anyway.
        raise BadQuery(f"{name}: control characters are not allowed")
    return value.strip()


def correlation(record: dict[str, Any]) -> str:
    """The record's correlation id, at the top or in its detail; blank for older records."""
    detail = record.get("detail")
    found = record.get("correlation_id") or (
        detail.get("correlation_id") if isinstance(detail, dict) else None)
    return str(found) if found else ""


def summary(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The few detail fields that say what a record means, in a fixed order."""
    detail = record.get("detail")
    if not isinstance(detail, dict):
        return []
    return [(f, _shown(detail[f])) for f in SUMMARY_FIELDS if detail.get(f) is not None]


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@viewer_page
async def incidents(request: web.Request, session: Session) -> web.StreamResponse:
    try:
        before = number_param(request.query.get("before"), "before")
    except BadQuery as e:
        return refuse(request, session, 400, str(e), "invalid_query")
    async with acquire(request.app[STATE].pool) as conn:
        rows = await queries.list_incidents(conn, before, PAGE_SIZE)
        banner = await automation(conn)
    older = rows[-1]["id"] if len(rows) == PAGE_SIZE else None
    return page(request.app[WEB].env, "incidents.html", session=session, incidents=rows,
                older=older, nav="incidents", banner=banner, newest=rows[0]["id"] if rows
                else 0, live=before is None)


def timeline(found: dict[str, Any]) -> list[dict[str, Any]]:
    """Action records and evidence deliveries in time order."""
    entries = [{"at": r.get("at"), "kind": r.get("kind"), "record": r, "summary": summary(r),
                "correlation": correlation(r)} for r in found["timeline"]]
    for d in found["deliveries"]:
        fields = [("sink", d["sink"]), ("status", d["status"]), ("attempts", str(d["attempts"]))]
        if d["last_error"]:
            fields.append(("error", d["last_error"]))
        entries.append({"at": (d["delivered_at"] or d["created_at"]).isoformat(),
                        "kind": f"delivery ({d['kind']})", "record": None, "summary": fields,
                        "correlation": ""})
    entries.sort(key=lambda e: str(e["at"]))
    return entries


@viewer_page
async def evidence(request: web.Request, session: Session) -> web.StreamResponse:
    """The sealed bundle as a download, with its digest in a header."""
    try:
        incident_id = number_param(request.match_info["incident_id"], "incident")
        version = number_param(request.query.get("version"), "version")
    except BadQuery as e:
        return refuse(request, session, 400, str(e), "invalid_query")
    assert incident_id is not None
    async with acquire(request.app[STATE].pool) as conn:
        row = await queries.evidence_bundle(conn, incident_id, version)
    if row is None:
        return refuse(request, session, 404, "No sealed bundle for that incident yet.",
                      "not_found")
    body = {"incident_id": incident_id, "version": row["version"], "digest": row["digest"],
            "prev_digest": row["prev_digest"], "bundle": json.loads(row["body"])}
    name = f"incident-{incident_id}-v{row['version']}.json"
    return web.json_response(body, headers={
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Evidence-Digest": row["digest"], "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"})


def _filters(request: web.Request) -> queries.ActionFilter:
    q = request.query
    outcome = _text(q.get("outcome"), "outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise BadQuery(f"outcome: one of {', '.join(OUTCOMES)}")
    return queries.ActionFilter(
        rule_id=_text(q.get("rule"), "rule"), control=_text(q.get("control"), "control"),
        incident_id=number_param(q.get("incident"), "incident"), kind=_text(q.get("kind"), "kind"),
        correlation_id=_text(q.get("correlation"), "correlation"),
        since=_time(q.get("since"), "since"), until=_time(q.get("until"), "until"),
        outcome=outcome, before=number_param(q.get("before"), "before"), limit=PAGE_SIZE,
        newest_first=True)


@viewer_page
async def actions(request: web.Request, session: Session) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        filters = _filters(request)
    except BadQuery as e:
        return refuse(request, session, 400, str(e), "invalid_query")
    async with acquire(state.pool) as conn:
        records = await queries.list_actions(conn, filters)
        banner = await automation(conn)
    older = None
    if len(records) == PAGE_SIZE:
        params = {k: v for k, v in request.query.items() if k != "before"}
        older = str(request.rel_url.with_query({**params, "before": str(records[-1]["seq"])}))
    rows = [{"record": r, "summary": summary(r), "correlation": correlation(r)}
            for r in records]
    return page(request.app[WEB].env, "actions.html", session=session, groups=group(rows),
                banner=banner,
                query=request.query, older=older, outcomes=OUTCOMES,
                rules=sorted(r.id for r in state.rules.rules),
                controls=sorted(state.rules.controls), nav="actions")
