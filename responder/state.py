"""The running daemon's shared objects, handed to request handlers under one typed AppKey."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from responder.actions.admin_http import AdminClient
from responder.auth import Principals, TokenSet
from responder.config import Settings
from responder.engine.executor import Executor
from responder.engine.modes import Modes
from responder.engine.recorder import Recorded
from responder.evidence.builder import EvidenceBuilder
from responder.metrics import Metrics
from responder.model import Alert
from responder.redaction import Redactor
from responder.rules.table import RuleTable
from responder.store.types import Pool
from responder.store.writer import Writer


class Pipeline(Protocol):
    """Where the intake sources hand accepted alerts (responder.intake.pipeline); named
    here by its shape so that the state does not import the intake that imports it."""

    async def record(self, alerts: Sequence[Alert], nonce: tuple[str, str] | None = None,
                     correlation_id: str | None = None) -> Recorded: ...


@dataclass
class DaemonState:
    """Everything a handler needs; built by the daemon's wiring. It holds, it does not act."""

    settings: Settings
    metrics: Metrics
    redactor: Redactor
    webhook_tokens: TokenSet
    principals: Principals
    rules: RuleTable
    pool: Pool
    writer: Writer
    executor: Executor
    client: AdminClient
    modes: Modes
    pipeline: Pipeline
    """Where every intake source hands the alerts it accepted."""
    is_draining: bool = False
    dead_tasks: set[str] = field(default_factory=set)
    """Background tasks that ended with an error: the replica is then not ready."""
    stalled: dict[str, str] = field(default_factory=dict)
    """Kafka topics whose consumer cannot commit (topic to reason): not ready either."""
    reload: Callable[[str], Awaitable[RuleTable]] | None = None
    evidence: EvidenceBuilder | None = None


STATE = web.AppKey("state", DaemonState)
