"""Kafka intake of metric samples: evaluate them against the metric rules, record the
internal alerts they raise through the same path as every other alert, then commit.

Offsets are committed only after the alerts a batch raised are durably recorded. While the
store refuses them the consumer retries the write and reads nothing further; the batch is
never committed unrecorded. Evaluation state is in memory: after a restart the uncommitted
samples are read again and raise the same alerts (same startsAt and fingerprint, absorbed
as re-deliveries), but a ``for`` timer begun on committed samples starts again.
Producers must key messages by series so one series stays on one partition, and so on one
consumer of the group, in order.
"""

from __future__ import annotations

import asyncio
from dataclasses import astuple
from typing import Any

import structlog

from responder import correlation
from responder.config import Settings
from responder.engine.thresholds import OUTCOMES, Counts, Evaluator
from responder.errors import StoreError
from responder.intake.kafka import RETRY_S, KafkaIntake, poison_reason
from responder.intake.samples import observe_message
from responder.model import Alert
from responder.rules.table import METRICS_SOURCE
from responder.state import DaemonState

log = structlog.get_logger("responder.kafka")
YIELD_EVERY = 16  # messages; about 10 ms of work with 100 samples each


class MetricsIntake(KafkaIntake):
    """Consumes the metrics topic into an Evaluator; commits once raised alerts are stored."""

    source = "kafka-metrics"

    def __init__(self, settings: Settings, state: DaemonState) -> None:
        super().__init__(settings, state)
        self._topic = settings.kafka.metrics_topic
        self._group = settings.kafka.metrics_group or f"{settings.kafka.group}-metrics"
        self._dlq_topic = settings.kafka.metrics_dlq_topic
        self._lag = state.metrics.kafka_metrics_lag
        self.evaluator = Evaluator(state.rules, max_series=settings.metric_rules.max_series,
                                   stale_after_s=settings.metric_rules.stale_after_s,
                                   max_future_s=settings.metric_rules.max_future_s)
        self._flushed = Counts()

    async def _handle(self, batch: dict[Any, list[Any]]) -> None:
        evaluator = self.evaluator
        if evaluator.table is not self._state.rules:
            evaluator.bind(self._state.rules)  # the table was reloaded
        max_bytes = self._settings.kafka.max_message_bytes
        count = 0
        for tp, messages in batch.items():
            for msg in messages:
                if count % YIELD_EVERY == 0:
                    # Evaluation is synchronous: let webhooks, containment and the next
                    # fetch run between slices instead of after the whole batch.
                    await asyncio.sleep(0)
                count += 1
                try:
                    observe_message(evaluator, msg.value, max_bytes)
                except Exception as e:  # whatever it raised, the message caused it
                    await self._dead_letter(tp, msg, poison_reason(e))
        alerts = evaluator.take()
        cid = correlation.new_id()
        if alerts and not await self._record(alerts, cid):
            return  # stopping with the alerts unrecorded: the batch is read again next start
        from aiokafka.structs import OffsetAndMetadata

        await self._consumer.commit({tp: OffsetAndMetadata(messages[-1].offset + 1, "")
                                     for tp, messages in batch.items()})
        self._flush_counts()
        for alert in alerts:
            self._state.metrics.alerts.labels(METRICS_SOURCE, alert.status).inc()
            log.info("metric rule alert recorded", status=alert.status,
                     alertname=alert.labels.get("alertname"), starts_at=alert.starts_at,
                     correlation_id=cid)

    async def _record(self, alerts: list[Alert], cid: str) -> bool:
        """Record until stored (True), or until stopping (False). The evaluator has already
        moved on, so reading the samples again would not raise these alerts: hold them."""
        while True:
            try:
                with structlog.contextvars.bound_contextvars(correlation_id=cid):
                    await self._state.pipeline.record(alerts, correlation_id=cid)
            except StoreError as e:
                if self.paused:
                    return False
                self.stall.failing("store_unavailable", str(e))
                await asyncio.sleep(RETRY_S)
            else:
                return True

    def _flush_counts(self) -> None:
        m, now = self._state.metrics, self.evaluator.counts
        deltas = [n - before for n, before in zip(astuple(now), astuple(self._flushed),
                                                  strict=True)]
        for outcome, delta in zip(OUTCOMES, deltas, strict=False):
            if delta:
                m.metric_samples.labels(outcome).inc(delta)
        if deltas[-1]:
            m.metric_series_forgotten.inc(deltas[-1])
        m.metric_series.set(self.evaluator.live_series)
        self._flushed = Counts(*astuple(now))
