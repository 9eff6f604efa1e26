"""The rule table in force: its first load at start, and each reload (SIGHUP, the API).

A reload that finds any problem keeps the last good table and records the refusal; one
that succeeds records which table replaced which.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from responder.config import Settings
from responder.errors import RuleError, StoreError
from responder.metrics import Metrics
from responder.redaction import Redactor
from responder.rules.in_force import load_table
from responder.rules.table import RuleTable
from responder.state import DaemonState
from responder.store.actionlog import ChainAppender, Entry
from responder.store.kinds import Kind
from responder.store.types import Conn
from responder.store.writer import Unit

log = structlog.get_logger("responder")


def load_first(settings: Settings, metrics: Metrics, redactor: Redactor) -> RuleTable:
    """The start's table; its target tokens are redacted from then on."""
    table = load_table(settings)
    _redact_tokens(table, redactor)
    metrics.rules_loaded.set(len(table.rules))
    metrics.rules_reload_ok.set(1)
    return table


class RuleReloader:
    """Loads the table again for the state's handlers; one per daemon."""

    def __init__(self, state: DaemonState) -> None:
        self._state = state

    async def reload(self, by: str) -> RuleTable:
        """Load the rule table again; on any problem keep the last good one and raise."""
        state, metrics = self._state, self._state.metrics
        old = state.rules
        try:
            table = await asyncio.to_thread(load_table, state.settings)
        except RuleError as e:
            problems = [str(p) for p in e.problems]
            metrics.rules_reloads.labels("refused").inc()
            metrics.rules_reload_ok.set(0)
            log.error("rule reload refused; the last good table stays in force", by=by,
                      problems=problems, rules_hash=old.bundle_hash)
            await state.writer.submit(_append(Entry(Kind.RULES_RELOAD_REFUSED, detail={
                "by": by, "problems": problems, "kept": old.bundle_hash})))
            raise
        _redact_tokens(table, state.redactor)
        state.rules = table
        metrics.rules_loaded.set(len(table.rules))
        metrics.rules_reloads.labels("loaded").inc()
        metrics.rules_reload_ok.set(1)
        log.info("rules reloaded", by=by, rules=len(table.rules), rules_hash=table.bundle_hash,
                 previous=old.bundle_hash)
        await state.writer.submit(_append(Entry(Kind.RULES_RELOADED, detail={
            "by": by, "from": old.bundle_hash, "to": table.bundle_hash,
            "rules": len(table.rules)})))
        return table

    async def on_signal(self, requested: asyncio.Event) -> None:
        """The job: reload each time the SIGHUP handler sets ``requested``."""
        while True:
            await requested.wait()
            requested.clear()
            with contextlib.suppress(RuleError, StoreError):
                await self.reload("SIGHUP")


def _redact_tokens(table: RuleTable, redactor: Redactor) -> None:
    redactor.add_secrets(t.token.get_secret_value()
                         for t in table.targets.values() if t.token is not None)


def _append(entry: Entry) -> Unit[None]:
    async def unit(conn: Conn, chain: ChainAppender) -> None:
        chain.add(entry)

    return unit
