"""The Kafka evidence sink under concurrent deliveries: the outbox hands it every due row
at once, so its one producer is shared, and a broker that was down must not leave it
with a producer that is half started, stopped under another delivery, or leaked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from responder.config import SinkSpec
from responder.evidence.sinks import DeliveryError, KafkaSink
from tests.conftest import Broker, free_port
from tests.test_kafka import topic_messages

DELIVERIES = 12


def _sink(kafka: Broker) -> tuple[KafkaSink, str]:
    topic = f"evidence-{free_port()}"
    return KafkaSink(SinkSpec(name="bus", kind="kafka", bootstrap=kafka.bootstrap,
                              topic=topic)), topic


async def _deliver_all(sink: KafkaSink, start: int = 0) -> list[Any]:
    return await asyncio.gather(*(sink.deliver(f"key-{i}", "bundle", {"n": i})
                                  for i in range(start, start + DELIVERIES)),
                                return_exceptions=True)


async def test_concurrent_deliveries_share_one_producer(kafka: Broker,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Deliveries handed over at once all land, through one started producer."""
    import aiokafka

    started: list[object] = []
    real_start = aiokafka.AIOKafkaProducer.start

    async def counted(self: aiokafka.AIOKafkaProducer) -> None:
        started.append(self)
        await real_start(self)

    monkeypatch.setattr(aiokafka.AIOKafkaProducer, "start", counted)
    sink, topic = _sink(kafka)
    try:
        results = await _deliver_all(sink)
    finally:
        await sink.close()
    assert results == [None] * DELIVERIES
    assert len(started) == 1
    keys = sorted(m.key.decode() for m in await topic_messages(kafka, topic))
    assert keys == sorted(f"key-{i}" for i in range(DELIVERIES))


async def test_deliveries_after_the_broker_comes_back_all_land(kafka: Broker) -> None:
    """While the broker is down every concurrent delivery fails as a DeliveryError (to be
    retried); once it is back, the next concurrent round lands whole."""
    if kafka.popen is None:
        pytest.skip("needs the private broker, which the test stops and starts")
    sink, topic = _sink(kafka)
    kafka.stop()
    try:
        failed = await _deliver_all(sink)
        assert all(isinstance(r, DeliveryError) for r in failed), failed
        kafka.start()
        results = await asyncio.wait_for(_deliver_all(sink, DELIVERIES), timeout=60)
    finally:
        await sink.close()
    assert results == [None] * DELIVERIES
    keys = sorted(m.key.decode() for m in await topic_messages(kafka, topic))
    assert keys == sorted(f"key-{i}" for i in range(DELIVERIES, 2 * DELIVERIES))
