"""The incident page's three answers: what is held now, why, and what to do next."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from responder.engine.manual import UNKEYED
from responder.rules.table import RuleTable
from responder.web.charts import Chart
from responder.web.reasons import Reason, explain
from responder.web.render import age


def safe_url(value: object) -> str | None:
    """An http(s) address to link to; anything else (javascript:, data:, a path) is shown as
    text, never as a link, because it arrives in alert annotations."""
    if not isinstance(value, str) or not value.strip():
        return None
    parts = urlsplit(value.strip())
    return value.strip() if parts.scheme in ("http", "https") and parts.netloc else None


@dataclass(frozen=True)
class Held:
    control: str
    key: str
    key_shown: str
    level: str
    rank: int
    since: object
    set_by: str
    verified: bool | None
    is_global: bool
    next_level: str | None
    two_person: bool


@dataclass(frozen=True)
class Why:
    summary: str = ""
    description: str = ""
    rule_description: str = ""
    source_url: str | None = None
    runbook_url: str | None = None
    runbook_text: str = ""  # a runbook the rule names that is not a web address
    labels: dict[str, str] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)


@dataclass(frozen=True)
class Next:
    text: str
    tone: str  # "bad": act now, "warn": decide, "ok": nothing to do
    commands: list[str] = field(default_factory=list)  # to do by hand what was withheld


@dataclass(frozen=True)
class IncidentView:
    held: list[Held]
    global_holds: list[Held]
    why: Why
    next: Next
    charts: list[Chart]
    operators: list[str]


def _held(rows: list[dict[str, Any]], rules: RuleTable) -> list[Held]:
    out = []
    for r in rows:
        control = rules.controls.get(r["control"])
        keyed = control.is_keyed if control is not None else bool(r["key"])
        out.append(Held(r["control"], r["key"], r["key"] or UNKEYED, r["level"], r["rank"],
                        r["updated_at"], r.get("set_by") or "", r.get("verified"), not keyed,
                        control.release_next(r["level"]) if control and r["rank"] > 0 else None,
                        bool(control and control.two_person_release)))
    return out


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _why(incident: dict[str, Any], alerts: list[dict[str, Any]], rules: RuleTable,
         reasons: list[Reason]) -> Why:
    alert: dict[str, Any] = alerts[0]["alert"] if alerts else {}
    notes: dict[str, Any] = _mapping(alert.get("annotations"))
    labels = _mapping(alert.get("labels"))
    rule = next((r for r in rules.rules if r.id == incident["rule_id"]), None)
    # The rule's own runbook link is optional (an older table has none); read it defensively.
    declared = getattr(rule, "runbook", None) if rule is not None else None
    runbook = notes.get("runbook_url") or (declared if isinstance(declared, str) else "")
    return Why(summary=str(notes.get("summary", "")),
               description=str(notes.get("description", "")),
               rule_description=rule.description if rule is not None else "",
               source_url=safe_url(alert.get("generatorURL")),
               runbook_url=safe_url(runbook),
               runbook_text="" if safe_url(runbook) else str(runbook or ""),
               labels={str(k): str(v) for k, v in labels.items()},
               reasons=reasons)


def _by_hand(timeline: list[dict[str, Any]], incident_id: int) -> list[str]:
    """The ``responder contain`` command for each step automation withheld."""
    out = []
    for r in timeline:
        d = r.get("detail")
        if r.get("kind") == "would_act" and isinstance(d, dict):
            key = r.get("key") or UNKEYED
            out.append(f"responder contain {r.get('control')} {key} --to {d.get('level')}"
                       f" --reason 'incident {incident_id}'")
    return out


def _next(incident: dict[str, Any], held: list[Held], reasons: list[Reason],
          timeline: list[dict[str, Any]]) -> Next:
    holding = [h for h in held if h.rank > 0]
    withheld = any(r.tone == "warn" and "nothing was done" in r.text for r in reasons)
    failed = any(r.text.startswith("containment not confirmed") for r in reasons)
    if incident["status"] == "resolved":
        when = age(incident.get("resolved_at")) or "recently"
        if holding:
            return Next(f"Resolved {when}; containment held; release when safe.", "warn")
        return Next(f"Resolved {when}; nothing is held now: nothing to do.", "ok")
    if failed and not holding:
        return Next("Containment failed and nothing is held: contain by hand now (Controls"
                    " page, or `responder contain`), then follow the runbook.", "bad")
    if withheld and not holding:
        return Next("Nothing was done: automation did not act. If the alert is real, contain"
                    " by hand (an operator's token in RESPONDER_TOKEN), then follow the"
                    " runbook:", "bad", _by_hand(timeline, incident["id"]))
    if holding:
        return Next("Alert still firing; containment held. Follow the runbook; release once"
                    " the cause is fixed.", "warn")
    return Next("Alert still firing; this rule contains nothing: follow the runbook.", "warn")


def build(found: dict[str, Any], held_rows: list[dict[str, Any]],
          alerts: list[dict[str, Any]], rules: RuleTable, charts: list[Chart],
          operators: list[str]) -> IncidentView:
    held = _held(held_rows, rules)
    reasons = explain(found["timeline"], found["steps"])
    return IncidentView(held=held, global_holds=[h for h in held if h.is_global and h.rank > 0],
                        why=_why(found["incident"], alerts, rules, reasons),
                        next=_next(found["incident"], held, reasons, found["timeline"]),
                        charts=charts,
                        operators=operators)


def inbox_ids(timeline: list[dict[str, Any]]) -> list[int]:
    """The inbox rows of the alerts that matched the incident, in arrival order."""
    ids = []
    for r in timeline:
        d = r.get("detail")
        if r.get("kind") == "alert_matched" and isinstance(d, dict):
            value = d.get("inbox_id")
            if isinstance(value, int) and value not in ids:
                ids.append(value)
    return ids
