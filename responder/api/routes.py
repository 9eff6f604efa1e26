"""Every operation of the HTTP API, once: the router is built from this table, and so is
the OpenAPI document, so neither can list a route the other lacks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from responder.api import actions, answers, bodies, controls, health, modes
from responder.api.actions import Handler
from responder.api.filters import ActionQuery
from responder.auth import Role
from responder.params import MAX_ID

ID = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
TEXT = {"type": "string"}


@dataclass(frozen=True)
class Operation:
    """One method on one path: who may call it, what it takes and what it answers."""

    method: str
    path: str
    handler: Handler
    summary: str
    query: type[BaseModel] | None = None
    # The schema of each success status; None means any JSON object.
    success: Mapping[int, type[BaseModel] | None] = field(default_factory=lambda: {200: None})
    refusals: tuple[int, ...] = ()
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extra_query: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    media_type: str = "application/json"

    @property
    def role(self) -> Role | None:
        """The role the handler requires: the document cannot name another."""
        return actions.role_of(self.handler)

    @property
    def body(self) -> type[bodies.Body] | None:
        """The model the handler parses its body with: the document cannot name another."""
        return bodies.model_of(self.handler)


INCIDENT = {"incident_id": ID}
CONTROL_KEY = {"control": TEXT, "key": TEXT}
MANUAL = (400, 403, 404, 409, 502)

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/healthz", health.healthz, "The process is alive.",
              success={200: answers.Healthy}),
    Operation("GET", "/readyz", health.readyz, "The store answers, rules are loaded and"
              " nothing is draining (503 otherwise, with the same body).",
              success={200: answers.Readiness, 503: answers.Readiness}),
    Operation("GET", "/metrics", health.metrics, "Prometheus metrics.",
              media_type="text/plain"),
    Operation("GET", "/v1/actions", actions.list_actions, "Action-log records in sequence"
              " order, filtered and paged.", query=ActionQuery,
              success={200: answers.ActionsPage}, refusals=(400,)),
    Operation("GET", "/v1/incidents/{incident_id}", actions.get_incident, "An incident, its"
              " steps, its timeline and its deliveries.", path_params=INCIDENT,
              refusals=(400, 404)),
    Operation("GET", "/v1/incidents/{incident_id}/evidence", actions.get_evidence,
              "The incident's sealed evidence bundle and its digest.",
              path_params=INCIDENT, extra_query={"version": {**ID, "maximum": 2**31 - 1}},
              refusals=(400, 404)),
    Operation("GET", "/v1/controls", controls.list_controls, "Every key held above its"
              " lowest level.", success={200: answers.ControlsView}),
    Operation("POST", "/v1/controls/{control}/{key}/release", controls.release,
              "Release a key by one stop (202 when a second operator must approve).",
              success={200: None, 202: None},
              refusals=MANUAL, path_params=CONTROL_KEY),
    Operation("POST", "/v1/controls/{control}/{key}/contain", controls.contain,
              "Raise a key's level by hand.",
              refusals=MANUAL, path_params=CONTROL_KEY),
    Operation("GET", "/v1/release-requests", controls.list_requests, "Two-person releases"
              " waiting for approval.",
              success={200: answers.ReleaseRequestsView}),
    Operation("POST", "/v1/release-requests/{request_id}/approve", controls.approve,
              "Approve another operator's release request.",
              refusals=MANUAL, path_params={"request_id": ID}),
    Operation("GET", "/v1/mode", modes.get_mode, "The automation mode and any break-glass.",
              success={200: answers.ModeView}),
    Operation("POST", "/v1/mode", modes.set_mode, "Switch the automation mode.",
              success={200: answers.ModeView}, refusals=(400,)),
    Operation("POST", "/v1/break-glass", modes.start_break_glass, "Pause automation for"
              " ttl_s, or extend the running break-glass (409 past 24 h from its start).",
              success={200: answers.ModeView},
              refusals=(400, 409)),
    Operation("DELETE", "/v1/break-glass", modes.end_break_glass, "End break-glass early.",
              success={200: answers.ModeView},
              refusals=(400, 409)),
    Operation("POST", "/-/reload", modes.reload_rules, "Reload the rule table; a bad one is"
              " refused and the last good one stays.",
              success={200: answers.Reloaded}, refusals=(400,)),
)
