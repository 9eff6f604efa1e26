"""Kafka intake of alerts: a consumer group whose offsets are committed only after the
alerts in the messages are durably recorded (at-least-once; re-deliveries are absorbed by
the inbox like any other).

A message holds an Alertmanager payload (version 4) or one alert in responder's own shape
(schemas in ``docs/schemas/``). A poison message, one that fails to decode, validate or
record for a reason of its own (not JSON, failing its schema, too large, refused by the
store as data, or any other error it raises), goes to the dead-letter topic once with the
reason and its original partition and offset, is counted, and the rest of its batch
proceeds. A batch that fails for a reason that is not a message (the store down, a bug) is
not committed: the consumer pauses, reads it again, and shows as stalled (intake/stall.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from responder import correlation, failpoints
from responder.config import Settings
from responder.errors import StoreError, StoreRefused, StoreUnavailable
from responder.intake.alertmanager import PayloadError, payload_alerts
from responder.intake.events import normalised_alert
from responder.intake.message import decode_message
from responder.intake.stall import KAFKA_ERROR, Stall
from responder.model import Alert
from responder.state import DaemonState

log = structlog.get_logger("responder.kafka")

SOURCE = "kafka"
RETRY_S = 1.0
STOP_S = 5.0


def poison_reason(error: BaseException) -> str:
    """What a dead letter's ``reason`` header says: our own messages name the field; any
    other error is named by its type, its text cut short."""
    if isinstance(error, PayloadError):
        return str(error)[:500]
    return f"{type(error).__name__}: {error}"[:500]


def parse_message(value: bytes | None, max_bytes: int) -> list[Alert]:
    """The alerts one message carries, or PayloadError with the reason it is poison."""
    data = decode_message(value, max_bytes)
    if not isinstance(data, dict):
        raise PayloadError("", "a message must be a JSON object")
    if "alerts" in data:
        return payload_alerts(data)
    alert, _ = normalised_alert(data, SOURCE)
    return [alert]


class KafkaIntake:
    """Consumes the alerts topic; commits a batch's offsets once its alerts are recorded."""

    source = SOURCE
    stall: Stall
    """Set by start(), once the topic is known."""

    def __init__(self, settings: Settings, state: DaemonState) -> None:
        self._settings = settings
        self._state = state
        self._consumer: Any = None
        self._producer: Any = None
        self.paused = False
        self._topic, self._group = settings.kafka.alerts_topic, settings.kafka.group
        self._dlq_topic, self._lag = settings.kafka.dlq_topic, state.metrics.kafka_lag

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        s = self._settings
        self.stall = Stall(self._state, self._topic)
        self._consumer = AIOKafkaConsumer(
            self._topic, bootstrap_servers=s.kafka.bootstrap,
            group_id=self._group, enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=max(1_048_576, s.kafka.max_message_bytes + 1024),
            fetch_max_wait_ms=s.kafka.fetch_max_wait_ms)
        self._producer = AIOKafkaProducer(bootstrap_servers=s.kafka.bootstrap, acks="all")
        await self._producer.start()
        await self._consumer.start()

    async def stop(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                try:
                    await asyncio.wait_for(client.stop(), timeout=STOP_S)
                except Exception as e:  # a broker already gone must not stop shutdown
                    log.warning("kafka client did not stop cleanly", error=repr(e))

    async def run(self) -> None:
        from aiokafka.errors import KafkaError

        while True:
            if self.paused:
                await asyncio.sleep(0.1)
                continue
            try:
                batch = await self._consumer.getmany(timeout_ms=500, max_records=500)
                if batch:
                    try:
                        await self._handle(batch)
                    except KafkaError as e:
                        # Neither committed nor wholly handled: read it again, or the next
                        # batch's commit would skip past it.
                        self._rewind(batch)
                        self.stall.failing(KAFKA_ERROR, str(e))
                        raise
                    except StoreError as e:
                        # Not recorded, so not committed: read the same messages again.
                        reason = ("store_unavailable" if isinstance(e, StoreUnavailable)
                                  else "store_error")
                        await self._retry_later(batch, reason, str(e))
                        continue
                    except Exception as e:
                        # A bug, not bad input (that is dead-lettered): keep the consumer
                        # alive and the batch uncommitted; the log and the lag say so.
                        log.exception("kafka batch failed", topic=self._topic)
                        self._state.metrics.task_failures.labels(f"kafka:{self._topic}").inc()
                        await self._retry_later(batch, "error", f"{type(e).__name__}: {e}")
                        continue
                    self.stall.moving()
                await self._export_lag()
            except KafkaError as e:
                log.warning("kafka unavailable; retrying", error=str(e))
                await asyncio.sleep(RETRY_S)

    async def _retry_later(self, batch: dict[Any, list[Any]], reason: str, error: str) -> None:
        self._rewind(batch)
        self.stall.failing(reason, error)
        await self._export_lag()  # rewound: the lag shows the batch waiting
        await asyncio.sleep(RETRY_S)

    def _rewind(self, batch: dict[Any, list[Any]]) -> None:
        rewind(self._consumer, batch)

    async def _handle(self, batch: dict[Any, list[Any]]) -> None:
        poison: list[tuple[Any, Any, str]] = []
        parsed: list[tuple[Any, Any, list[Alert]]] = []
        for tp, messages in batch.items():
            for msg in messages:
                try:
                    alerts = parse_message(msg.value, self._settings.kafka.max_message_bytes)
                except Exception as e:  # whatever the parser raised, the message caused it
                    poison.append((tp, msg, poison_reason(e)))
                    continue
                parsed.append((tp, msg, alerts))
        # Each message is its own delivery with its own correlation id; the writer still
        # commits them together, and retries a failed group unit by unit, so a message
        # the store refuses for its data (StoreRefused) fails alone.
        results = await asyncio.gather(*(self._record_message(a) for _, _, a in parsed),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, asyncio.CancelledError) or (
                    isinstance(result, StoreError) and not isinstance(result, StoreRefused)):
                raise result  # not the message's fault: the whole batch is read again
        recorded: list[Alert] = []
        for (tp, msg, alerts), result in zip(parsed, results, strict=True):
            if isinstance(result, BaseException):
                poison.append((tp, msg, f"not recorded: {poison_reason(result)}"))
            else:
                recorded.extend(alerts)
        failpoints.reach(failpoints.KAFKA_AFTER_RECORD)
        # Dead-lettered only once the rest is recorded: a store outage re-reads the batch,
        # and its poison must not reach the dead-letter topic once per retry.
        for tp, msg, reason in poison:
            await self._dead_letter(tp, msg, reason)
        from aiokafka.structs import OffsetAndMetadata

        await self._consumer.commit({tp: OffsetAndMetadata(messages[-1].offset + 1, "")
                                     for tp, messages in batch.items()})
        for alert in recorded:
            self._state.metrics.alerts.labels(SOURCE, alert.status).inc()

    async def _record_message(self, alerts: list[Alert]) -> None:
        cid = correlation.new_id()
        with structlog.contextvars.bound_contextvars(correlation_id=cid):
            recorded = await self._state.pipeline.record(alerts, correlation_id=cid)
            log.info("alerts recorded", source=SOURCE, new=recorded.new,
                     redelivered=recorded.redelivered, incidents=sorted(recorded.incidents),
                     steps=len(recorded.steps))

    async def _dead_letter(self, tp: Any, msg: Any, reason: str) -> None:
        self._state.metrics.rejected.labels(self.source, "poison").inc()
        log.warning("poison message sent to the dead-letter topic", partition=tp.partition,
                    offset=msg.offset, reason=reason)
        await self._producer.send_and_wait(
            self._dlq_topic, msg.value or b"", key=msg.key,
            headers=[("reason", reason.encode()), ("topic", tp.topic.encode()),
                     ("partition", str(tp.partition).encode()),
                     ("offset", str(msg.offset).encode())])

    async def _export_lag(self) -> None:
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            position = await self._consumer.position(tp)
            self._lag.labels(str(tp.partition)).set(max(0, high - position))


def rewind(consumer: Any, batch: dict[Any, list[Any]]) -> list[Any]:
    """Read a batch again from its first message, partition by partition; return the
    partitions skipped because a rebalance took them from this consumer meanwhile.

    A skipped partition loses nothing: its new owner starts from the last committed offset,
    which is before this batch. Stopping at the first refusal would leave the remaining
    partitions past messages never recorded, for the next commit to skip for good.
    """
    from aiokafka.errors import IllegalStateError

    skipped = []
    for tp, messages in batch.items():
        try:
            consumer.seek(tp, messages[0].offset)
        except IllegalStateError:
            skipped.append(tp)
    if skipped:
        log.info("partitions reassigned before their batch was read again; their new owner"
                 " reads it", partitions=[f"{tp.topic}[{tp.partition}]" for tp in skipped])
    return skipped
