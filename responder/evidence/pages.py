"""Pages sent to people: one per event, saying in a few lines what was done, what could not
be done, why, and where to look.

A page is composed from a sealed bundle, once the incident's planned steps have all ended
(every intent has its outcome), so that it can say how they ended. Each sealed version
remembers the last action-log record a page covered (``paged_seq``); a later version pages
again only for what happened after it: a failure, an escalation, a refused key, an unseen
scope, a tripped guard, or the alert resolving while containment is held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TROUBLE = frozenset({"containment_failed", "escalation", "key_rejected", "scope_unknown",
                     "storm_guard_tripped"})
"""Record kinds that page by themselves, whatever the rule's severity."""


@dataclass(frozen=True)
class Page:
    """One page: its idempotency key stem, its lines, and the last record it covers."""

    event: str
    key: str
    through_seq: int
    headline: str
    done: list[str] = field(default_factory=list)
    not_done: list[str] = field(default_factory=list)
    why: str = ""
    runbook: str = ""
    source: str = ""
    link: str = ""

    @property
    def text(self) -> str:
        """The page as a few lines of plain text (what a Slack-style sink shows)."""
        lines = [self.headline]
        if self.done:
            lines.append("Done: " + "; ".join(self.done))
        if self.not_done:
            lines.append("Not done: " + "; ".join(self.not_done))
        if self.why:
            lines.append(f"Why: {self.why}")
        if self.runbook:
            lines.append(f"Runbook: {self.runbook}")
        if self.link:
            lines.append(f"Incident: {self.link}")
        return "\n".join(lines)

    def payload(self, incident_id: int, digest: str,
                correlation_id: str | None) -> dict[str, Any]:
        return {"kind": "page", "reason": self.event, "incident_id": incident_id,
                "digest": digest, "correlation_id": correlation_id, "summary": self.text,
                "done": self.done, "not_done": self.not_done, "why": self.why,
                "runbook": self.runbook, "source": self.source, "link": self.link}


def incident_link(base: str, incident_id: int) -> str:
    """The incident's web page under the configured public base URL."""
    return f"{base.rstrip('/')}/incidents/{incident_id}" if base else ""


def next_page(bundle: dict[str, Any], paged_seq: int | None, base_url: str) -> Page | None:
    """The page this version of the bundle owes, if any (see the module docstring)."""
    actions: list[dict[str, Any]] = bundle["actions"]
    through = max((a["seq"] for a in actions), default=0)
    if not _settled(actions):
        return None
    incident = bundle["incident"]
    rule = bundle.get("rule") or {}
    since = paged_seq or 0
    new = [a for a in actions if a["seq"] > since and a["kind"] != "evidence_sealed"]
    if paged_seq is None:
        wanted = (incident["severity"] == "sev1" or rule.get("page")
                  or any(a["kind"] in TROUBLE for a in new))
        if not wanted:
            return None
        event, key = "opened", f"page-{incident['id']}-opened"
    else:
        resolved = [a for a in new if _resolved_held(a)]
        if not (resolved or any(a["kind"] in TROUBLE for a in new)):
            return None
        event = "resolved" if resolved and not any(a["kind"] in TROUBLE for a in new) \
            else "update"
        key = f"page-{incident['id']}-{event}-{new[0]['seq']}"
    done, not_done = _lines(new)
    alert = _first_alert(bundle)
    annotations = alert.get("annotations") or {}
    return Page(event=event, key=key, through_seq=through,
                headline=_headline(bundle, event, new, done, not_done),
                done=done, not_done=not_done,
                why=annotations.get("summary") or annotations.get("description")
                or rule.get("description") or "",
                runbook=annotations.get("runbook_url") or rule.get("runbook") or "",
                source=alert.get("generatorURL") or "",
                link=incident_link(base_url, incident["id"]))


def _settled(actions: list[dict[str, Any]]) -> bool:
    """Every planned step has ended: each intent's step has an outcome."""
    intents = {a["step_id"] for a in actions if a["kind"] == "intent"}
    outcomes = {a["step_id"] for a in actions if a["kind"] == "outcome"}
    return intents <= outcomes


def _resolved_held(record: dict[str, Any]) -> bool:
    return bool(record["kind"] == "alert_resolved"
                and record["detail"].get("note") == "resolved, containment held")


def _first_alert(bundle: dict[str, Any]) -> dict[str, Any]:
    alerts = bundle.get("alerts") or []
    return dict(alerts[0]["alert"]) if alerts else {}


def _target(record: dict[str, Any]) -> str:
    key = record.get("key") or ""
    return f"{record.get('control') or ''}{f'[{key}]' if key else ''}"


Said = tuple[bool, str]
"""(done, words): done, or could not be done."""


def _outcome(r: dict[str, Any]) -> Said | None:
    d = r["detail"]
    status = d.get("status")
    if status == "applied":
        how = " (escalation)" if d.get("kind") == "escalation" else ""
        unverified = "" if d.get("verified") is not False else " (unverified)"
        return True, f"{_target(r)}={d.get('level')}{how}{unverified}"
    if status == "already_contained":
        return True, f"{_target(r)} already at {d.get('held') or d.get('level')}"
    if status == "failed":
        return False, f"{_target(r)} -> {d.get('level')} failed: {d.get('error')}"
    return None


_SAY: dict[str, Callable[[dict[str, Any]], Said | None]] = {
    "outcome": _outcome,
    "already_contained": lambda r: (True, f"{_target(r)} already at {r['detail'].get('held')}"),
    "escalation": lambda r: (False, f"escalated to {_target(r)} -> {r['detail'].get('level')}"),
    "key_rejected": lambda r: (
        False, f"label {r['detail'].get('label')} value {r['detail'].get('value')} failed"
               f" the key pattern of {r.get('control')}: escalated instead"),
    "scope_unknown": lambda r: (
        False, f"{r['detail'].get('truncated_alerts')} alerts of the group were not delivered"
               " (truncated): scope unknown, escalated"),
    "storm_guard_tripped": lambda r: (
        False, f"blast-radius guard: {r['detail'].get('why')}; {r['detail'].get('action')}"),
    "would_act": lambda r: (
        False, f"would set {_target(r)}={r['detail'].get('level')}"
               f" ({r['detail'].get('effect')}: nothing called)"),
    "containment_failed": lambda r: (False, f"CONTAINMENT FAILED: {r['detail'].get('reason')}"),
    "notify_only": lambda r: (False, "notify only: the rule declares no containment"),
    "alert_resolved": lambda r: (
        (True, "alert resolved; containment held: release when safe")
        if _resolved_held(r) else None),
}
"""How each kind of record is said in a page; kinds not here are not mentioned."""


def _lines(records: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """What the records did, and what they could not do, in words."""
    done: list[str] = []
    not_done: list[str] = []
    for r in records:
        say = _SAY.get(r["kind"])
        said = say(r) if say is not None else None
        if said is not None:
            (done if said[0] else not_done).append(said[1])
    return done, not_done


def _headline(bundle: dict[str, Any], event: str, records: list[dict[str, Any]],
              done: list[str], not_done: list[str]) -> str:
    incident = bundle["incident"]
    kinds = {r["kind"] for r in records}
    if "containment_failed" in kinds:
        state = "CONTAINMENT FAILED"
    elif event == "resolved":
        state = "resolved, containment held"
    elif kinds & {"escalation", "key_rejected", "scope_unknown", "storm_guard_tripped"}:
        state = "escalated"
    elif "would_act" in kinds:
        state = "not contained (automation not enforcing)"
    elif done:
        state = "contained"
    else:
        state = "opened" if not not_done else "not contained"
    cid = f" [cid {incident['correlation_id']}]" if incident.get("correlation_id") else ""
    return (f"[{incident['severity'].upper()}] {incident['rule_id']}"
            f" ({incident['scope'] or '-'}): {state}{cid}")
