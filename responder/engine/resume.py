"""When automation resumes, contain what fired while it could not act.

An alert first seen while paused, in dry-run or during break-glass opens an incident with
nothing applied, and Alertmanager's repeats of it are re-deliveries, which plan nothing. So
when automatic calls may go out again (the mode switched to enforce, on any replica, or
break-glass ended), every open incident whose alerts still fire is planned again from its
latest firing delivery, under the policy in force now, recorded as ``incident_replanned``
with the steps it added; the steps left pending meanwhile run too. Planning is idempotent
(a step already asked for, or a level already held, adds nothing), so replicas that all
see the switch plan each step once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from responder.engine.executor import Executor
from responder.engine.modes import Modes
from responder.engine.planner import Decision, PlannedStep, decide
from responder.engine.recorder import new_step, step_entry
from responder.errors import StoreError
from responder.model import Alert
from responder.rules.table import RuleTable
from responder.store.actionlog import ChainAppender, Entry
from responder.store.kinds import Kind
from responder.store.queries import firing_incidents
from responder.store.steps import StepRow, insert_steps
from responder.store.types import Conn
from responder.store.writer import Writer

log = structlog.get_logger("responder.engine")

CHECK_S = 0.2

def alert_from_json(raw: dict[str, Any]) -> Alert:
    """An alert as the inbox stored it (Alert.to_json)."""
    return Alert(source=raw["source"], fingerprint=raw["fingerprint"], status=raw["status"],
                 labels=dict(raw["labels"]), annotations=dict(raw["annotations"]),
                 starts_at=raw["startsAt"], ends_at=raw.get("endsAt", ""),
                 generator_url=raw.get("generatorURL", ""), group_key=raw.get("groupKey", ""),
                 truncated_alerts=int(raw.get("truncatedAlerts", 0)),
                 receiver=raw.get("receiver", ""))


class Resumer:
    """Watches the mode; after each change, when enforcing, plans open incidents again."""

    def __init__(self, writer: Writer, rules: Callable[[], RuleTable], modes: Modes,
                 executor: Executor, changed: Callable[[set[int]], None] | None = None) -> None:
        self._writer = writer
        self._rules = rules
        self._modes = modes
        self._executor = executor
        self._changed = changed

    async def run(self) -> None:
        """Plan at start if enforcing (another replica may have switched and died), then
        after every change of mode while enforcing; a pass the store refused is tried
        again. A change that leaves enforce as it was plans nothing new (idempotent)."""
        planned_at: int | None = None
        while True:
            revision = self._modes.revision
            if revision != planned_at and self._modes.is_enforcing():
                try:
                    # At start the daemon has just queued every pending step itself.
                    await self.replan("automation resumed", recover=planned_at is not None)
                except StoreError as e:
                    log.warning("resume: open incidents not planned yet", error=str(e))
                    await asyncio.sleep(1.0)
                    continue
                planned_at = revision
            await asyncio.sleep(CHECK_S)

    async def replan(self, why: str, *, recover: bool = True) -> list[StepRow]:
        """Plan every open incident whose alerts still fire; execute what it adds, and
        (``recover``) the steps left pending while automation could not act."""
        table = self._rules()
        policy = self._modes.policy()
        if policy.automatic != "enforce":
            return []

        async def unit(conn: Conn, chain: ChainAppender) -> tuple[list[StepRow], set[int]]:
            rows = await firing_incidents(conn)
            added: list[StepRow] = []
            touched: set[int] = set()
            for row in rows:
                alert = alert_from_json(json.loads(row["alert"]))
                decisions = [d for d in decide(alert, table, policy)
                             if d.rule.id == row["rule_id"] and d.acts
                             and (d.scope == row["scope"] or d.storm is not None)]
                steps = await _plan(conn, chain, row["id"], row["correlation_id"],
                                    row["fingerprint"], decisions, why)
                if steps is not None:
                    added.extend(steps)
                    touched.add(row["id"])
            return added, touched

        added, touched = await self._writer.submit(unit)
        if added:
            log.warning("automation resumed: containing incidents that fired meanwhile",
                        incidents=len(touched), steps=len(added))
        self._executor.submit(added)
        if recover:
            await self._executor.recover()
        if touched and self._changed is not None:
            self._changed(touched)
        return added


async def _plan(conn: Conn, chain: ChainAppender, incident_id: int, correlation_id: str | None,
                fingerprint: str, decisions: Sequence[Decision],
                why: str) -> list[StepRow] | None:
    """Insert the incident's steps; None if it asked for nothing new."""
    planned = [(d, p) for d in decisions for p in d.steps]
    if not planned:
        return None
    wanted = [new_step(incident_id, d.rule.id, p, correlation_id) for d, p in planned]
    inserted = await insert_steps(conn, wanted)
    rows = [i.row for i in inserted if i.row is not None]
    if not rows:
        return None
    rule_id = decisions[0].rule.id
    chain.add(Entry(Kind.INCIDENT_REPLANNED, incident_id=incident_id, rule_id=rule_id,
                    correlation_id=correlation_id,
                    detail={"why": why, "fingerprint": fingerprint,
                            "steps": [r.id for r in rows]}))
    by_key: dict[tuple[int, str, str, str, str], PlannedStep] = {}
    for w, (_, p) in zip(wanted, planned, strict=True):
        by_key.setdefault(w.natural_key, p)
    for ins in inserted:
        entry = step_entry(by_key[ins.step.natural_key], ins)
        if entry is not None:
            chain.add(entry)
    return rows
