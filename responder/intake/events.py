"""``POST /webhooks/events``: single alerts from services that are not Alertmanager, signed.

The sender signs ``timestamp + "." + body`` with HMAC-SHA256 under a secret shared with
its source, and sends::

    X-Responder-Source: edge
    X-Responder-Timestamp: 1795412602
    X-Responder-Signature: sha256=<hex>

A signature is accepted under any of the source's secrets (rotation), only within the time
window, and each ``event_id`` only once: a replay gets 409.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from responder import jsontext
from responder.correlation import REQUEST_KEY
from responder.errors import StoreRefused, StoreUnavailable
from responder.intake.alertmanager import RFC3339, PayloadError, check_text
from responder.intake.refusals import BodyRefused, read_within, refuse
from responder.model import Alert
from responder.params import plain_int
from responder.state import STATE, DaemonState

log = structlog.get_logger("responder.intake")
CHALLENGE = {"WWW-Authenticate": 'ResponderSignature realm="responder",'
             ' headers="X-Responder-Source X-Responder-Timestamp X-Responder-Signature"'}
"""A 401 names its scheme (RFC 9110); signed events use our own, not a bearer token."""


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    event_id: str = Field(default="", max_length=128)
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1, max_length=128)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: str = Field(pattern=RFC3339)
    ends_at: str = Field(default="", pattern=f"{RFC3339}|^$")
    fingerprint: str = Field(default="", max_length=64)


def parse_event(body: bytes, source: str) -> tuple[Alert, str]:
    """The alert an event carries and its event id, or PayloadError naming the field."""
    try:
        data = jsontext.loads(body)
    except jsontext.JSONTextError as e:
        raise PayloadError("", f"malformed JSON: {e}") from e
    if not isinstance(data, dict):
        raise PayloadError("", "the event must be a JSON object")
    return normalised_alert(data, f"events:{source}")


def normalised_alert(data: dict[str, object], source: str) -> tuple[Alert, str]:
    """An alert in responder's own shape (see docs/schemas), and its event id ("" if none)."""
    check_text(data, "")
    try:
        event = _Event.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise PayloadError(".".join(str(p) for p in err["loc"]), err["msg"]) from e
    fingerprint = event.fingerprint or hashlib.sha256(
        json.dumps(event.labels, sort_keys=True).encode()).hexdigest()[:16]
    alert = Alert(source=source, fingerprint=fingerprint, status=event.status,
                  labels=event.labels, annotations=event.annotations,
                  starts_at=event.starts_at, ends_at=event.ends_at)
    return alert, event.event_id


def signature_problem(secrets: Sequence[SecretStr], timestamp: str, body: bytes,
                      signature: str, window_s: float, now: float) -> str | None:
    """None if the signature is good and fresh, else the reason code."""
    seconds = plain_int(timestamp)
    if seconds is None:
        return "bad_timestamp"
    if abs(now - seconds) > window_s:
        return "stale_timestamp"
    scheme, _, given = signature.partition("=")
    if scheme != "sha256" or not given or not given.isascii():  # compare_digest needs ASCII
        return "bad_signature"
    message = timestamp.encode() + b"." + body
    good = False
    for secret in secrets:
        expected = hmac.new(secret.get_secret_value().encode(), message,
                            hashlib.sha256).hexdigest()
        good |= hmac.compare_digest(expected, given)
    return None if good else "bad_signature"


def _sources(state: DaemonState) -> Mapping[str, Sequence[SecretStr]]:
    return {s.name: s.secrets for s in state.settings.access.event_sources}


async def events_webhook(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.is_draining:
        return refuse(state, "events", 503, "draining", "shutting down; retry")
    source = request.headers.get("X-Responder-Source", "")
    timestamp = request.headers.get("X-Responder-Timestamp", "")
    signature = request.headers.get("X-Responder-Signature", "")
    if not (source and timestamp and signature):
        return refuse(state, "events", 401, "missing_signature",
                      "X-Responder-Source, -Timestamp and -Signature are required", CHALLENGE)
    secrets = _sources(state).get(source)
    if secrets is None:
        return refuse(state, "events", 401, "unknown_source", "no such event source",
                      CHALLENGE)
    try:
        body = await read_within(request, state.settings.web.max_body_bytes)
    except BodyRefused as e:
        return e.answer(state, "events")
    problem = signature_problem(secrets, timestamp, body, signature,
                                state.settings.intake.event_window_s, time.time())
    if problem is not None:
        return refuse(state, "events", 401, problem,
                      "the signature does not verify or is too old", CHALLENGE)
    try:
        alert, event_id = parse_event(body, source)
    except PayloadError as e:
        reason = "invalid_field" if e.field else "malformed_json"
        return refuse(state, "events", 400, reason, str(e))
    if not event_id:
        return refuse(state, "events", 400, "invalid_field",
                      "event_id: a signed event needs an id")
    try:
        recorded = await state.pipeline.record([alert], nonce=(source, event_id),
                                      correlation_id=request[REQUEST_KEY])
    except StoreRefused as e:
        return refuse(state, "events", 400, "unstorable", str(e))
    except StoreUnavailable as e:
        log.warning("event not recorded; answering 503", error=str(e))
        return refuse(state, "events", 503, "store_unavailable", "not recorded; retry")
    if recorded.replayed:
        return refuse(state, "events", 409, "replayed", f"event {event_id!r} was already received")
    log.info("event recorded", source=source, event_id=event_id, new=recorded.new,
             incidents=sorted(recorded.incidents), steps=len(recorded.steps))
    state.metrics.alerts.labels(alert.source, alert.status).inc()
    return web.json_response({"recorded": recorded.new, "redelivered": recorded.redelivered,
                              "incidents": sorted(recorded.incidents)})
