"""Kafka poison of every kind goes to the dead-letter topic once and the batch proceeds; a
batch that fails for a reason that is not a message stalls visibly and recovers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from responder.daemon import Daemon
from responder.intake import kafka as kafka_intake
from responder.intake.stall import blocking
from responder.model import Alert
from tests.conftest import (
    Broker,
    DaemonFactory,
    Exchange,
    PrivatePostgres,
    fixture_bytes,
    settings_for,
    url,
    wait_for,
)
from tests.test_kafka import kafka_settings, normalised, produce, topic_messages
from tests.test_kafka_metrics import batch, metrics_settings

HUGE_INT = b'{"status": "firing", "n": ' + b"7" * 5000 + b"}"
STORE_REFUSES = "STORE-REFUSES"


def _truncated_past_int32() -> bytes:
    payload = json.loads(fixture_bytes("firing-single.json"))
    payload["truncatedAlerts"] = 2**31
    return json.dumps(payload).encode()


def _refused_by_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let one alert past validation with a count its column cannot hold, so the store
    itself refuses it (DataError): poison found only when recording."""
    parse = kafka_intake.parse_message

    def parse_message(value: bytes | None, max_bytes: int) -> list[Alert]:
        alerts = parse(value, max_bytes)
        return [dataclasses.replace(a, truncated_alerts=2**31)
                if a.labels.get("symbol") == STORE_REFUSES else a for a in alerts]

    monkeypatch.setattr(kafka_intake, "parse_message", parse_message)


async def test_poison_of_any_kind_is_dead_lettered_once_and_the_batch_proceeds(
    kafka: Broker, make_daemon: DaemonFactory, exchange: Exchange,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 5,000-digit integer, truncatedAlerts past int32 and a message the store refuses
    each reach the dead-letter topic once; the good message among them is contained."""
    _refused_by_the_store(monkeypatch)
    settings = kafka_settings(kafka)
    daemon = await make_daemon(**settings)
    poison = [HUGE_INT, _truncated_past_int32(), normalised(STORE_REFUSES)]
    await produce(kafka, settings["kafka_alerts_topic"], poison[0], poison[1],
                  normalised("ETH-USD"), poison[2])
    await wait_for(lambda: exchange.state.symbols.get("ETH-USD") == "HARD_HALT",
                   timeout_s=30, what="the good message among the poison")
    await wait_for(lambda: daemon.metrics.rejected.labels("kafka", "poison")._value.get() == 3,
                   timeout_s=30, what="three dead letters")
    dead = sorted(await topic_messages(kafka, settings["kafka_dlq_topic"]),
                  key=lambda m: int(dict(m.headers)["offset"]))
    assert [m.value for m in dead] == poison
    reasons = [dict(m.headers)["reason"].decode() for m in dead]
    assert reasons[0].startswith("malformed JSON: an integer of 5000 digits")
    assert reasons[1].startswith("truncatedAlerts")
    assert reasons[2].startswith("not recorded: StoreRefused: the store refused the data")
    assert STORE_REFUSES not in exchange.state.symbols
    assert daemon.state is not None and daemon.state.stalled == {}


async def test_metric_samples_poison_of_any_kind_is_dead_lettered(
    kafka: Broker, make_daemon: DaemonFactory, exchange: Exchange,
) -> None:
    """A 5,000-digit integer on the metrics topic is dead-lettered; later samples soft-halt."""
    settings = metrics_settings(kafka)
    daemon = await make_daemon(**settings)
    t0 = time.time() - 600
    huge = b'{"name": "settlement_lag_p99", "labels": {}, "value": ' + b"1" * 5000 + b', "ts": 1}'
    await produce(kafka, settings["kafka_metrics_topic"], batch(t0, [(0, 150)]), huge,
                  batch(t0, [(15, 150), (30, 150)]))
    await wait_for(lambda: exchange.state.global_mode == "SOFT_HALT", timeout_s=30,
                   what="the soft halt after the poison")
    [dead] = await topic_messages(kafka, settings["kafka_metrics_dlq_topic"])
    assert dead.value == huge
    assert daemon.metrics.rejected.labels("kafka-metrics", "poison")._value.get() == 1


async def test_a_store_outage_stalls_the_consumer_visibly_until_it_is_back(
    kafka: Broker, private_postgres: PrivatePostgres, rules_dir: Path, exchange: Exchange,
) -> None:
    """With the store down a batch is not dead-lettered but retried: /readyz says the topic
    is stalled and why, responder_kafka_stalled is 1; once the store is back the alert is
    contained and the stall clears."""
    ks = kafka_settings(kafka)
    topic = ks["kafka_alerts_topic"]
    daemon = Daemon(settings_for(private_postgres.dsn, rules_dir, **ks),
                    registry=CollectorRegistry())
    await daemon.start()
    try:
        assert daemon.state is not None
        state = daemon.state
        await asyncio.to_thread(private_postgres.stop)
        await produce(kafka, topic, fixture_bytes("firing-single.json"))
        await wait_for(lambda: state.stalled == {topic: "store_unavailable"}, timeout_s=30,
                       what="the stall to show")
        assert daemon.metrics.kafka_stalled.labels(topic)._value.get() == 1
        async with aiohttp.ClientSession() as http, http.get(url(daemon, "/readyz")) as resp:
            assert resp.status == 503
            assert (await resp.json())["kafka_stalled"] == {topic: "store_unavailable"}
        assert exchange.state.calls == []
        await asyncio.to_thread(private_postgres.start)
        await wait_for(lambda: exchange.state.withdrawals == "HALTED", timeout_s=30,
                       what="containment once the store is back")
        await wait_for(lambda: state.stalled == {}, timeout_s=15, what="the stall to clear")
        assert daemon.metrics.kafka_stalled.labels(topic)._value.get() == 0
        assert await topic_messages(kafka, ks["kafka_dlq_topic"]) == []
    finally:
        await daemon.shutdown()


def test_a_stall_of_kafkas_own_leaves_the_replica_ready() -> None:
    """A dead-letter send or commit failing is shared by every replica: it shows, but only
    the store's and a bug's stalls make a replica not ready."""
    stalled = {"a": "kafka_error", "b": "store_unavailable", "c": "error"}
    assert blocking(stalled) == {"b": "store_unavailable", "c": "error"}
