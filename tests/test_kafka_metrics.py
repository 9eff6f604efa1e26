"""Metric samples on the Kafka metrics topic: threshold rules contain through the exchange,
offsets are committed after the raised alerts are recorded, poison goes to the DLQ."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from responder.daemon import Daemon
from tests.conftest import (
    Broker,
    DaemonFactory,
    Exchange,
    PrivatePostgres,
    idle,
    settings_for,
    wait_for,
)
from tests.test_kafka import committed, produce

LAG = "settlement_lag_p99"


def metrics_settings(kafka: Broker) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    return {"kafka_bootstrap": kafka.bootstrap, "kafka_alerts_topic": f"alerts-{suffix}",
            "kafka_dlq_topic": f"dlq-{suffix}", "kafka_group": f"responder-{suffix}",
            "kafka_metrics_topic": f"metrics-{suffix}",
            "kafka_metrics_dlq_topic": f"metrics-dlq-{suffix}"}


def batch(t0: float, points: list[tuple[float, float]], venue: str = "main") -> bytes:
    return json.dumps({"samples": [{"name": LAG, "labels": {"venue": venue}, "value": v,
                                    "ts": t0 + at} for at, v in points]}).encode()


async def test_lag_samples_throttle_then_soft_halt(
    kafka: Broker, make_daemon: DaemonFactory, exchange: Exchange, database: str,
) -> None:
    """Lag above T2 for a minute throttles new orders, above T3 for 30 s soft-halts; both
    go through the action log, and the offsets are then committed."""
    settings = metrics_settings(kafka)
    daemon = await make_daemon(**settings)
    t0 = time.time() - 600
    topic = settings["kafka_metrics_topic"]
    await produce(kafka, topic, batch(t0, [(0, 10), (15, 35), (45, 40)]),
                  batch(t0, [(75, 50)]))
    await wait_for(lambda: exchange.state.order_intake == "THROTTLED", timeout_s=30,
                   what="the throttle")
    assert exchange.state.global_mode == "NORMAL"
    await produce(kafka, topic, batch(t0, [(90, 130), (105, 135), (120, 140)]))
    await wait_for(lambda: exchange.state.global_mode == "SOFT_HALT", timeout_s=30,
                   what="the soft halt")
    await idle(daemon)
    applied = [c.path for c in exchange.applied()]
    assert applied == ["/admin/orders/intake", "/admin/global/mode"], applied
    await wait_for(lambda: _committed_is(kafka, topic, settings, 3), timeout_s=15,
                   what="the offset commit")
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT alert FROM inbox WHERE source = 'metrics' ORDER BY id")
    finally:
        await conn.close()
    alerts = [json.loads(r["alert"]) for r in rows]
    assert [a["labels"]["alertname"] for a in alerts] == ["SettlementLagHigh",
                                                          "SettlementLagCritical"]
    assert alerts[0]["labels"]["venue"] == "main"
    assert daemon.metrics.metric_samples.labels("evaluated")._value.get() == 7


async def _committed_is(kafka: Broker, topic: str, settings: dict[str, Any],
                        offset: int) -> bool:
    group = f"{settings['kafka_group']}-metrics"
    return await committed(kafka, topic, group) == offset


async def test_poison_sample_message_is_dead_lettered_and_later_samples_evaluated(
    kafka: Broker, make_daemon: DaemonFactory, exchange: Exchange,
) -> None:
    """A poison message on the metrics topic reaches its DLQ with reason, partition and
    offset; the samples after it on the same partition still soft-halt."""
    settings = metrics_settings(kafka)
    daemon = await make_daemon(**settings)
    t0 = time.time() - 600
    await produce(kafka, settings["kafka_metrics_topic"], batch(t0, [(0, 150)]),
                  b'{"samples": [{"name": "settlement_lag_p99", "value": "high", "ts": 1}]}',
                  batch(t0, [(15, 150), (30, 150)]))
    await wait_for(lambda: exchange.state.global_mode == "SOFT_HALT", timeout_s=30,
                   what="the soft halt after the poison")
    consumer = AIOKafkaConsumer(settings["kafka_metrics_dlq_topic"],
                                bootstrap_servers=kafka.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        got = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    [dead] = [m for msgs in got.values() for m in msgs]
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["offset"] == "1" and headers["partition"] == "0"
    assert headers["topic"] == settings["kafka_metrics_topic"]
    assert headers["reason"] == "samples.0.value: must be a number"
    assert daemon.metrics.rejected.labels("kafka-metrics", "poison")._value.get() == 1


async def test_offsets_wait_for_the_store_when_samples_raise_an_alert(
    kafka: Broker, private_postgres: PrivatePostgres, rules_dir: Path, exchange: Exchange,
) -> None:
    """With the store down, samples that raise an alert are not committed and nothing is
    called, and the consumer shows as stalled; once the store is back the alert is recorded,
    contained and then committed, and the stall clears."""
    settings = metrics_settings(kafka)
    daemon = Daemon(settings_for(private_postgres.dsn, rules_dir, **settings),
                    registry=CollectorRegistry())
    await daemon.start()
    topic = settings["kafka_metrics_topic"]
    try:
        t0 = time.time() - 600
        await produce(kafka, topic, batch(t0, [(0, 10)]))
        await wait_for(lambda: _committed_is(kafka, topic, settings, 1), timeout_s=30,
                       what="the first commit")
        await asyncio.to_thread(private_postgres.stop)
        await produce(kafka, topic, batch(t0, [(15, 150), (45, 150)]))
        await asyncio.sleep(3.0)
        assert await _committed_is(kafka, topic, settings, 1)
        assert exchange.state.calls == []
        assert daemon.state is not None
        state = daemon.state  # the stall shows while the write is retried
        await wait_for(lambda: state.stalled.get(topic) == "store_unavailable", timeout_s=30,
                       what="the metrics consumer's stall to show")
        await asyncio.to_thread(private_postgres.start)
        await wait_for(lambda: exchange.state.global_mode == "SOFT_HALT", timeout_s=30,
                       what="containment once the store is back")
        await wait_for(lambda: topic not in state.stalled, timeout_s=15,
                       what="the stall to clear")
        await wait_for(lambda: _committed_is(kafka, topic, settings, 2), timeout_s=15,
                       what="the commit after the record")
    finally:
        await daemon.shutdown()
