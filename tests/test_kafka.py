"""Kafka intake: commit after the durable write, poison to the dead-letter topic, rejoin after
a broker bounce, and re-deliveries absorbed."""

from __future__ import annotations

import asyncio
import json
import uuid
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from responder.intake.kafka import rewind
from tests.conftest import Broker, DaemonFactory, Exchange, fixture_bytes, idle, wait_for


def kafka_settings(kafka: Broker) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    return {"kafka_bootstrap": kafka.bootstrap, "kafka_alerts_topic": f"alerts-{suffix}",
            "kafka_dlq_topic": f"dlq-{suffix}", "kafka_group": f"responder-{suffix}"}


async def produce(kafka: Broker, topic: str, *values: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()


def normalised(symbol: str, name: str = "SplitBrainSuspected") -> bytes:
    return json.dumps({"status": "firing", "starts_at": "2026-11-23T06:00:00Z",
                       "labels": {"alertname": name, "severity": "sev1",
                                  "symbol": symbol}}).encode()


async def committed(kafka: Broker, topic: str, group: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(topic, 0))
        return offset
    finally:
        await consumer.stop()


async def test_alerts_from_kafka_are_contained_and_committed(
    kafka: Broker, make_daemon: DaemonFactory, exchange: Exchange,
) -> None:
    """An Alertmanager payload on the topic is contained, and its offset is then committed."""
    settings = kafka_settings(kafka)
    daemon = await make_daemon(**settings)
    await produce(kafka, settings["kafka_alerts_topic"], fixture_bytes("firing-single.json"))
    await wait_for(lambda: exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY",
                   timeout_s=30, what="containment from Kafka")
    await idle(daemon)
    await wait_for(lambda: _committed_is(kafka, settings, 1), timeout_s=15,
                   what="the offset commit")


async def _committed_is(kafka: Broker, settings: dict[str, Any], offset: int) -> bool:
    return await committed(kafka, settings["kafka_alerts_topic"], settings["kafka_group"]) \
        == offset


async def topic_messages(kafka: Broker, topic: str) -> list[Any]:
    """Every message on a topic so far (a dead-letter topic, a sink's topic)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    return [m for msgs in batch.values() for m in msgs]


async def test_poison_goes_to_the_dead_letter_topic(
    kafka: Broker, make_daemon: DaemonFactory, exchange: Exchange,
) -> None:
    """A poison message is dead-lettered with its reason and offset; the next is processed."""
    settings = kafka_settings(kafka)
    daemon = await make_daemon(**settings)
    await produce(kafka, settings["kafka_alerts_topic"], b"{not json", normalised("ETH-USD"))
    await wait_for(lambda: exchange.state.symbols.get("ETH-USD") == "HARD_HALT",
                   timeout_s=30, what="the message after the poison")
    [dead] = await topic_messages(kafka, settings["kafka_dlq_topic"])
    headers = {k: v.decode() for k, v in dead.headers}
    assert dead.value == b"{not json"
    assert headers["offset"] == "0" and headers["partition"] == "0"
    assert headers["reason"].startswith("malformed JSON")
    assert daemon.metrics.rejected.labels("kafka", "poison")._value.get() == 1


async def test_redelivered_messages_act_once(kafka: Broker, make_daemon: DaemonFactory,
                                             exchange: Exchange) -> None:
    """The same alert twice on the topic is recorded as a re-delivery and calls once."""
    settings = kafka_settings(kafka)
    daemon = await make_daemon(**settings)
    payload = fixture_bytes("firing-single.json")
    await produce(kafka, settings["kafka_alerts_topic"], payload, payload)
    await wait_for(lambda: _committed_is(kafka, settings, 2), timeout_s=30,
                   what="both messages committed")
    await idle(daemon)
    applied = [c.path for c in exchange.state.calls if c.applied]
    assert sorted(applied) == ["/admin/symbols/BTC-USD/mode", "/admin/withdrawals"], applied


async def test_consumer_rejoins_after_a_broker_bounce(
    kafka: Broker, make_daemon: DaemonFactory, exchange: Exchange,
) -> None:
    """After the broker restarts, new alerts are consumed and contained."""
    if kafka.popen is None:
        return  # an external broker is not ours to restart
    settings = kafka_settings(kafka)
    await make_daemon(**settings)
    await produce(kafka, settings["kafka_alerts_topic"], normalised("SOL-USD"))
    await wait_for(lambda: "SOL-USD" in exchange.state.symbols, timeout_s=30,
                   what="the first alert")
    kafka.stop()
    await asyncio.sleep(1.0)
    await asyncio.to_thread(kafka.start)
    await produce(kafka, settings["kafka_alerts_topic"], normalised("ADA-USD"))
    await wait_for(lambda: "ADA-USD" in exchange.state.symbols, timeout_s=60,
                   what="an alert after the bounce")
    assert sum(c.applied for c in exchange.state.calls if "SOL-USD" in c.path) == 1


async def test_a_rewind_skips_partitions_taken_away_and_rewinds_the_rest(
        kafka: Broker) -> None:
    """A batch read again after a failure, when a rebalance has meanwhile taken one of its
    partitions: the others still go back to the batch's first message (else the next
    commit would skip what was never recorded); the lost one is its new owner's."""
    topic = f"rewind-{uuid.uuid4().hex[:8]}"
    await produce(kafka, topic, b"0", b"1", b"2")
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        kept, lost = TopicPartition(topic, 0), TopicPartition(f"{topic}-gone", 0)
        consumer.assign([kept])
        await consumer.seek_to_end(kept)
        assert await consumer.position(kept) == 3
        first = SimpleNamespace(offset=1)
        assert rewind(consumer, {lost: [first], kept: [first]}) == [lost]
        assert await consumer.position(kept) == 1
    finally:
        await consumer.stop()


async def test_both_consumers_ask_the_broker_to_hold_a_fetch_briefly(
    kafka: Broker, make_daemon: DaemonFactory,
) -> None:
    """The client keeps one fetch in flight per broker and leaves out the partitions whose
    records it still holds, so a message there waits for that fetch: the broker may hold it
    kafka_fetch_max_wait_ms (20 by default), not aiokafka's 500. (What that does to an
    alert's latency is measured by bench/kafka_latency.py, not timed here.)"""
    daemon = await make_daemon(**kafka_settings(kafka))
    configured = await make_daemon(**kafka_settings(kafka), kafka_fetch_max_wait_ms=7)
    for d, wait_ms in ((daemon, 20), (configured, 7)):
        consumers = [d.kafka, d.metrics_intake]
        assert all(c is not None and c._consumer is not None for c in consumers)
        assert [c._consumer._fetch_max_wait_ms for c in consumers  # type: ignore[union-attr]
                ] == [wait_ms, wait_ms]
