"""The intake's one path for accepted alerts: record them durably, then start executing.

Every source (the webhooks, the Kafka consumers) calls ``AlertPipeline.record``; what it
needs is handed in when the daemon wires it, not looked up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from responder.engine.executor import Executor
from responder.engine.modes import Modes
from responder.engine.recorder import RecordAlerts, Recorded
from responder.evidence.builder import EvidenceBuilder
from responder.metrics import Metrics
from responder.model import Alert
from responder.redaction import Redactor
from responder.rules.table import RuleTable
from responder.store.writer import Writer


class AlertPipeline:
    """Accepted alerts -> one durable record of them and their plan -> the executor."""

    def __init__(self, *, writer: Writer, executor: Executor, rules: Callable[[], RuleTable],
                 modes: Modes, metrics: Metrics, redactor: Redactor, lease_s: float,
                 evidence: EvidenceBuilder | None = None) -> None:
        self._writer = writer
        self._executor = executor
        self._rules = rules
        self._modes = modes
        self._metrics = metrics
        self._redactor = redactor
        self._lease_s = lease_s
        self._evidence = evidence

    async def record(self, alerts: Sequence[Alert], nonce: tuple[str, str] | None = None,
                     correlation_id: str | None = None) -> Recorded:
        """Durably record alerts and their plan; only then start executing."""
        started = time.monotonic()
        # No claims taken while recording once draining: those steps would stay leased to
        # a process that no longer runs them, and other replicas would wait out the lease.
        replica = None if self._executor.closing else self._executor.replica
        recorded = await self._writer.submit(
            RecordAlerts(alerts, self._rules(), self._metrics, self._redactor,
                         self._modes.policy(), nonce, correlation_id, replica, self._lease_s))
        self._executor.submit(recorded.steps, recorded_from=started)
        if self._evidence is not None:
            self._evidence.touch(recorded.incidents)
        return recorded
