"""Why an incident went the way it did, in words: each escalation, failure, refusal and
withheld action of its timeline becomes one sentence for the person on call."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from responder.web.render import as_time

EFFECTS = {"dry_run": "dry-run", "paused": "automation paused", "stale": "the alert was too old"}


@dataclass(frozen=True)
class Reason:
    text: str
    tone: str  # "bad" (something failed or was widened), "warn" (withheld), "info"
    seq: int


def _target(control: object, key: object) -> str:
    return f"{control} {key}" if key else f"{control} (whole exchange)"


def _instead(escalations: list[dict[str, Any]]) -> str:
    if not escalations:
        return "no escalation is declared: nothing was contained"
    return "; ".join(f"set {_target(s['control'], s['key'])} to {s['level']} instead"
                     for s in escalations)


def _unquoted(value: object) -> str:
    """A refused value as recorded (its repr, bounded) without the repr's quotes."""
    text = str(value)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _seconds(later: object, earlier: object) -> str:
    a, b = as_time(later), as_time(earlier)
    if a is None or b is None:
        return ""
    return f" in {max(0, round((a - b).total_seconds()))} s"


def _failed(r: dict[str, Any], intents: dict[object, dict[str, Any]]) -> str:
    d = r.get("detail") or {}
    call = d.get("call") if isinstance(d.get("call"), dict) else {}
    attempts = len(call.get("attempts") or []) if call else 0
    intent = intents.get(r.get("step_id"))
    took = _seconds(r.get("at"), intent.get("at")) if intent else ""
    times = f" {attempts} time{'s' if attempts != 1 else ''}" if attempts else ""
    return (f"{_target(r.get('control'), r.get('key'))} → {d.get('level')}: the call failed"
            f"{times}{took}: {d.get('error', 'no answer')}")


def explain(records: Iterable[dict[str, Any]], steps: list[dict[str, Any]]) -> list[Reason]:
    """One sentence per record that changed or withheld what responder did."""
    records = list(records)
    escalations = [s for s in steps if s.get("kind") == "escalation"]
    intents = {r.get("step_id"): r for r in records if r.get("kind") == "intent"}
    out: list[Reason] = []
    for r in records:
        kind, d, seq = r.get("kind"), r.get("detail") or {}, int(r.get("seq") or 0)
        if not isinstance(d, dict):
            continue
        if kind == "key_rejected":
            out.append(Reason(f"{d.get('label')} label `{_unquoted(d.get('value'))}` failed the key"
                              f" pattern of {r.get('control')}: {_instead(escalations)}",
                              "bad", seq))
        elif kind == "scope_unknown":
            n = d.get("truncated_alerts")
            were = "alerts of the group were" if n != 1 else "alert of the group was"
            out.append(Reason(f"{n} {were} not delivered (truncated): scope unknown;"
                              f" {_instead(escalations)}."
                              " Raise max_alerts on the Alertmanager receiver", "bad", seq))
        elif kind == "outcome" and d.get("status") == "failed":
            out.append(Reason(_failed(r, intents), "bad", seq))
        elif kind == "escalation":
            out.append(Reason(f"escalated: set {_target(r.get('control'), r.get('key'))} to"
                              f" {d.get('level')} because the step before it failed", "bad",
                              seq))
        elif kind == "containment_failed":
            out.append(Reason(f"containment not confirmed: {d.get('reason')}", "bad", seq))
        elif kind == "storm_guard_tripped":
            out.append(Reason(f"blast-radius guard: {d.get('why')}; {d.get('action')}", "bad",
                              seq))
        elif kind == "would_act":
            effect = EFFECTS.get(str(d.get("effect")), str(d.get("effect")))
            out.append(Reason(f"{effect}: would have set {_target(r.get('control'), r.get('key'))}"
                              f" to {d.get('level')}; nothing was done", "warn", seq))
        elif kind in ("drift_corrected", "drift_repair_failed"):
            verb = "restored" if kind == "drift_corrected" else "could not restore"
            out.append(Reason(f"the target had lost {_target(r.get('control'), r.get('key'))}"
                              f" {d.get('held')} (it showed {d.get('observed')}); responder"
                              f" {verb} it", "bad" if kind == "drift_repair_failed" else "warn",
                              seq))
        elif kind == "already_contained":
            out.append(Reason(f"{_target(r.get('control'), r.get('key'))} already held"
                              f" {d.get('held')} (asked for {d.get('requested')}): no call",
                              "info", seq))
    return out
