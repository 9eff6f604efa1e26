"""Schemas of the ``/v1`` answers, for the published OpenAPI document.

Handlers build their answers as plain JSON; these models describe them, and the
schemathesis run checks every answer against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class BreakGlassView(BaseModel):
    until: str = Field(description="ISO 8601 time at which automation acts again.")
    by: str | None
    reason: str | None


class ModeView(BaseModel):
    mode: str
    break_glass: BreakGlassView | None
    max_alert_age_s: float | None


class ActionsPage(BaseModel):
    records: list[dict[str, Any]]
    next_after: int | None = Field(description="Pass as after= for the next page; null at"
                                               " the end.")


class HeldControl(BaseModel):
    control: str
    key: str
    level: str
    since: str
    set_by: str | None
    set_kind: str | None
    reason: str | None
    ticket: str | None
    incident_id: int | None
    confirmed: bool
    verified: bool | None


class ControlsView(BaseModel):
    controls: list[HeldControl]


class ReleaseRequestsView(BaseModel):
    requests: list[dict[str, Any]]


class Healthy(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    store: bool
    rules: int
    rules_hash: str
    draining: bool
    dead_tasks: list[str]


class Reloaded(BaseModel):
    rules: int
    rules_hash: str
