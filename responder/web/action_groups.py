"""The action log page shows one row per alert delivery or step: its records (arrival,
match, intent, outcome...) are grouped, newest group first, and expand on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PLUMBING = ("alert_matched", "intent", "alert_received", "incident_opened")
MAX_TELLING = 4


@dataclass
class Group:
    key: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # newest first

    @property
    def head(self) -> dict[str, Any]:
        """The row that says how it ended: the newest record."""
        return self.rows[0]

    @property
    def telling(self) -> list[dict[str, Any]]:
        """The records that say how it went (outcomes, escalations, refusals...), oldest
        first; the arrival and the plan are in the expanded list."""
        rows = [r for r in reversed(self.rows) if r["summary"]
                and r["record"].get("kind") not in PLUMBING]
        if not rows:
            rows = [r for r in self.rows if r["summary"]][:1]
        return rows[:MAX_TELLING]

    @property
    def first(self) -> dict[str, Any]:
        return self.rows[-1]

    @property
    def kinds(self) -> list[str]:
        """Each kind once, in the order they happened."""
        seen: list[str] = []
        for row in reversed(self.rows):
            kind = str(row["record"].get("kind"))
            if kind not in seen:
                seen.append(kind)
        return seen

    def common(self, name: str) -> str:
        """A field's values across the group, once each (blank where none has it)."""
        values: list[str] = []
        for row in reversed(self.rows):
            value = row["record"].get(name)
            if value not in (None, "") and str(value) not in values:
                values.append(str(value))
        return ", ".join(values)

    @property
    def targets(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for row in reversed(self.rows):
            r = row["record"]
            if r.get("control") and (r["control"], r.get("key") or "") not in out:
                out.append((r["control"], r.get("key") or ""))
        return out


def _key(row: dict[str, Any]) -> str:
    record = row["record"]
    if row.get("correlation"):
        return f"alert {row['correlation']}"
    if record.get("step_id") is not None:
        return f"step {record['step_id']}"
    return f"record {record.get('seq')}"


def group(rows: list[dict[str, Any]]) -> list[Group]:
    """Rows (newest first) grouped by alert delivery, else by step; a group sits where its
    newest record is."""
    groups: dict[str, Group] = {}
    for row in rows:
        key = _key(row)
        groups.setdefault(key, Group(key)).rows.append(row)
    return list(groups.values())
