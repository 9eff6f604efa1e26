"""The running daemon's shared objects, handed to request handlers under one typed AppKey."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web

from responder.actions.admin_http import AdminClient
from responder.auth import Principals, TokenSet
from responder.config import Settings
from responder.engine.executor import Executor
from responder.engine.modes import Modes
from responder.engine.recorder import RecordAlerts, Recorded
from responder.evidence.builder import EvidenceBuilder
from responder.metrics import Metrics
from responder.model import Alert
from responder.redaction import Redactor
from responder.rules.table import RuleTable
from responder.store.writer import Writer


@dataclass
class DaemonState:
    """Everything a handler needs; built by the daemon's start phase."""

    settings: Settings
    metrics: Metrics
    redactor: Redactor
    webhook_tokens: TokenSet
    principals: Principals
    rules: RuleTable
    pool: asyncpg.Pool
    writer: Writer
    executor: Executor
    client: AdminClient
    modes: Modes
    is_draining: bool = False
    dead_tasks: set[str] = field(default_factory=set)
    """Background tasks that ended with an error: the replica is then not ready."""
    stalled: dict[str, str] = field(default_factory=dict)
    """Kafka topics whose consumer cannot commit (topic to reason): not ready either."""
    reload: Callable[[str], Awaitable[RuleTable]] | None = None
    evidence: EvidenceBuilder | None = None

    async def record(self, alerts: Sequence[Alert], nonce: tuple[str, str] | None = None,
                     correlation_id: str | None = None) -> Recorded:
        """Durably record alerts and their plan; only then start executing."""
        started = time.monotonic()
        # No claims taken while recording once draining: those steps would stay leased to
        # a process that no longer runs them, and other replicas would wait out the lease.
        replica = None if self.executor.closing else self.executor.replica
        recorded = await self.writer.submit(
            RecordAlerts(alerts, self.rules, self.metrics, self.redactor, self.modes.policy(),
                         nonce, correlation_id, replica, self.settings.steps.lease_s))
        self.executor.submit(recorded.steps, recorded_from=started)
        if self.evidence is not None:
            self.evidence.touch(recorded.incidents)
        return recorded


STATE = web.AppKey("state", DaemonState)
