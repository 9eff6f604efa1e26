"""Past alerts from the store, with what was done for each, read from the action log.

Walking the log in order gives the events (each recorded alert, each incident a release
closed) and the baseline: for every alert, the rules it matched and the actions asked for
because of it (an ``intent``, an ``already_contained`` when the level was held, or a
``would_act`` when automation was not enforcing), counted once per incident as the store
does. An escalation that ran because a call failed belongs to the alert whose step failed,
and that failure is kept so the candidate table meets it too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from responder.errors import ReplayInputError
from responder.model import Alert
from responder.replay.events import Action, AlertEvent, CloseEvent, Event, Observed
from responder.replay.shadow import IncidentKey
from responder.store import inbox
from responder.store.types import Conn

ASKED = ("intent", "already_contained", "would_act")

@dataclass
class StoreHistory:
    """The events since the start, what was done for each alert, and the incidents that
    were already open at the start (with what they had asked for)."""

    events: list[Event] = field(default_factory=list)
    baseline: dict[int, Observed] = field(default_factory=dict)
    """Keyed by the position of the alert in ``events``."""
    open_at_start: dict[IncidentKey, set[Action]] = field(default_factory=dict)


def alert_from_json(data: Mapping[str, Any]) -> Alert:
    """An alert as the inbox stores it (``Alert.to_json``)."""
    return Alert(source=data["source"], fingerprint=data["fingerprint"],
                 status=data["status"], labels=dict(data["labels"]),
                 annotations=dict(data.get("annotations") or {}),
                 starts_at=data["startsAt"], ends_at=data.get("endsAt", ""),
                 generator_url=data.get("generatorURL", ""), group_key=data.get("groupKey", ""),
                 truncated_alerts=int(data.get("truncatedAlerts", 0)),
                 receiver=data.get("receiver", ""))


def _level(kind: str, detail: Mapping[str, Any]) -> str:
    return str(detail.get("requested" if kind == "already_contained" else "level", ""))


async def read_store(conn: Conn, since: datetime | None) -> StoreHistory:
    start_seq = 0
    if since is not None:
        start_seq = await inbox.seq_before(conn, since)
    history = StoreHistory()
    seeds: dict[int, set[Action]] = {}
    if since is not None:
        for r in await inbox.open_at(conn, since, start_seq, ASKED):
            action = Action(r["control"], r["key"] or "",
                            _level(_kind_of(r["body"]), json.loads(r["body"])["detail"]))
            history.open_at_start.setdefault((r["rule_id"], r["scope"]), set()).add(action)
            seeds.setdefault(r["id"], set()).add(action)
    rows = await inbox.log_after(conn, start_seq)
    walker = _Walker(history, seeds, await _alerts(conn, rows), await _incidents(conn, rows))
    for row in rows:
        walker.record(row)
    return history


def _kind_of(body: str) -> str:
    return str(json.loads(body)["kind"])


async def _alerts(conn: Conn, rows: list[Any]) -> dict[int, tuple[Alert, str]]:
    ids = [json.loads(r["body"])["detail"].get("inbox_id") for r in rows
           if r["kind"] == "alert_received"]
    found = await inbox.alerts(conn, [i for i in ids if isinstance(i, int)])
    alerts = {}
    for r in found:
        try:
            alerts[r["id"]] = (alert_from_json(json.loads(r["alert"])),
                               r["received_at"].isoformat())
        except (KeyError, TypeError, ValueError) as e:
            raise ReplayInputError(f"inbox {r['id']}: not an alert: {e}") from e
    return alerts


async def _incidents(conn: Conn, rows: list[Any]) -> dict[int, IncidentKey]:
    ids = [r["incident_id"] for r in rows if r["kind"] == "incident_closed"]
    return await inbox.incident_keys(conn, ids)


class _Walker:
    """Turns log records, in order, into events and the baseline."""

    def __init__(self, history: StoreHistory, seeds: dict[int, set[Action]],
                 alerts: Mapping[int, tuple[Alert, str]],
                 incidents: Mapping[int, IncidentKey]) -> None:
        self.history = history
        self.asked = seeds  # incident id -> actions it has asked for
        self.alerts = alerts
        self.incidents = incidents
        self.current: int | None = None  # position of the alert being recorded
        self.step_alert: dict[int, int] = {}
        self.escalating: tuple[int, int, int] | None = None  # (seq, incident, alert)

    def record(self, row: Any) -> None:
        kind = row["kind"]
        detail = json.loads(row["body"])["detail"]
        if kind == "alert_received":
            self._alert(detail)
        elif kind == "incident_closed" and row["incident_id"] in self.incidents:
            rule_id, scope = self.incidents[row["incident_id"]]
            self.history.events.append(CloseEvent(rule_id, scope))
        elif kind == "escalation":
            owner = self.step_alert.get(detail.get("after_step"), self.current)
            if owner is not None:
                self.escalating = (row["seq"], row["incident_id"], owner)
        elif kind in ASKED:
            self._asked(row, kind, detail)
        elif kind == "outcome" and detail.get("status") == "failed":
            owner = self.step_alert.get(row["step_id"])
            if owner is not None:
                self.history.baseline[owner].failed.add(
                    Action(row["control"], row["key"] or "", str(detail.get("level", ""))))

    def _alert(self, detail: Mapping[str, Any]) -> None:
        found = self.alerts.get(detail.get("inbox_id", -1))
        if found is None:
            self.current = None  # the inbox row is gone: nothing to replay
            return
        alert, at = found
        self.current = len(self.history.events)
        self.history.events.append(AlertEvent(alert, f"inbox {detail['inbox_id']}", at))
        self.history.baseline[self.current] = Observed(
            matched=set(detail.get("matched_rules", [])))

    def _asked(self, row: Any, kind: str, detail: Mapping[str, Any]) -> None:
        owner = self.current
        if self.escalating is not None:
            seq, incident, alert = self.escalating
            self.escalating = None
            # An escalation's own step is written right after the escalation record.
            if seq + 1 == row["seq"] and incident == row["incident_id"]:
                owner = alert
        if owner is None:
            return
        action = Action(row["control"], row["key"] or "", _level(kind, detail))
        if row["step_id"] is not None:
            self.step_alert[row["step_id"]] = owner
        asked = self.asked.setdefault(row["incident_id"], set())
        if action in asked:
            return  # asked for again by a later alert of the same incident
        asked.add(action)
        self.history.baseline[owner].asked.setdefault(action, row["rule_id"] or "")
