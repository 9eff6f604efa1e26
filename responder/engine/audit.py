"""What a target's audit log is told about each call (runbook: every admin action is
audited with a reason): the values of a control body's audit fields, per kind of call."""

from __future__ import annotations

from responder.store.steps import StepRow


def for_step(step: StepRow) -> dict[str, str]:
    """An automatic step or escalation: its rule and incident."""
    return automatic(step.rule_id, step.incident_id, step.kind)


def automatic(rule_id: str, incident_id: int, kind: str) -> dict[str, str]:
    """A step's audit fields before it has a row (an intent, or what dry-run would send)."""
    return {"rule": rule_id, "incident": str(incident_id), "ticket": "",
            "reason": f"responder {kind} for incident {incident_id} (rule {rule_id})"}


def for_person(reason: str, ticket: str | None, incident_id: int | None,
               by: str) -> dict[str, str]:
    """A release or manual change: the person's reason and ticket."""
    return {"rule": "", "incident": "" if incident_id is None else str(incident_id),
            "ticket": ticket or "", "reason": f"{by}: {reason}"}


def for_drift(incident_id: int | None) -> dict[str, str]:
    """Drift repair: the target lost a level responder holds."""
    return {"rule": "", "incident": "" if incident_id is None else str(incident_id),
            "ticket": "", "reason": "responder drift repair: the target lost a held level"}
