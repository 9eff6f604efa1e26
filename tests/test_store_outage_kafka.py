"""Kafka intake with PostgreSQL down: nothing is committed that is not stored, and the
alert is contained once the store is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from responder.daemon import Daemon
from tests.conftest import Broker, Exchange, PrivatePostgres, fixture_bytes, settings_for, wait_for
from tests.test_kafka import committed, kafka_settings, produce, topic_messages


async def test_kafka_offset_waits_for_the_store(
    kafka: Broker, private_postgres: PrivatePostgres, rules_dir: Path, exchange: Exchange,
) -> None:
    """While the store is down the consumer keeps its offset uncommitted and calls nothing;
    when the store returns the same message is recorded, contained, and only then committed.
    A poison message in the re-read batch reaches the dead-letter topic once, not per retry."""
    ks = kafka_settings(kafka)
    topic, group = ks["kafka_alerts_topic"], ks["kafka_group"]
    daemon = Daemon(settings_for(private_postgres.dsn, rules_dir, **ks),
                    registry=CollectorRegistry())
    await daemon.start()
    try:
        await asyncio.to_thread(private_postgres.stop)
        await produce(kafka, topic, b"{poison", fixture_bytes("firing-single.json"))
        await asyncio.sleep(4)  # several poll-and-retry rounds against the dead store
        assert await committed(kafka, topic, group) is None
        assert exchange.state.calls == []
        await asyncio.to_thread(private_postgres.start)
        await wait_for(lambda: exchange.state.withdrawals == "HALTED", timeout_s=30,
                       what="containment once the store is back")

        async def is_committed() -> bool:
            return await committed(kafka, topic, group) == 2

        await wait_for(is_committed, timeout_s=15, what="the offset commit")
        assert [m.value for m in await topic_messages(kafka, ks["kafka_dlq_topic"])] == [b"{poison"]
    finally:
        await daemon.shutdown()
