"""A daemon killed between recording a Kafka batch and committing its offsets loses nothing
and acts once: the restarted daemon reads the batch again as a re-delivery and finishes the
steps the dead one had planned, with their own Idempotency-Keys."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import asyncpg

from responder.failpoints import KAFKA_AFTER_RECORD
from tests.conftest import Broker, Exchange, Proc, fixture_bytes, wait_for
from tests.test_kafka import committed, kafka_settings, produce
from tests.test_process import daemon_env, spawn
from tests.test_replicas import audit_verify


async def _fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_killed_after_record_before_commit(
    kafka: Broker, tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    exchange: Exchange,
) -> None:
    ks = kafka_settings(kafka)
    topic, group = ks["kafka_alerts_topic"], ks["kafka_group"]
    env = daemon_env(database, rules_dir, **{f"RESPONDER_{k.upper()}": v for k, v in ks.items()})

    first = await spawn(tmp_path, procs, {**env, "RESPONDER_FAILPOINT": KAFKA_AFTER_RECORD})
    await produce(kafka, topic, fixture_bytes("firing-single.json"))
    code = await asyncio.to_thread(first.popen.wait, 60)
    assert code == -signal.SIGKILL, first.log()
    [inbox] = await _fetch(database, "SELECT deliveries FROM inbox")
    assert inbox["deliveries"] == 1  # recorded before the crash ...
    assert await committed(kafka, topic, group) is None  # ... and never committed

    await spawn(tmp_path, procs, env)

    async def settled() -> bool:
        pending = await _fetch(database, "SELECT 1 FROM steps WHERE status = 'pending'")
        return not pending and await committed(kafka, topic, group) == 1

    await wait_for(settled, timeout_s=60, what="the batch re-read, committed, steps closed")
    [inbox] = await _fetch(database, "SELECT deliveries FROM inbox")
    assert inbox["deliveries"] == 2  # the re-read is a re-delivery, not a new alert
    applied = Counter(c.path for c in exchange.state.calls if c.applied)
    assert applied == {"/admin/withdrawals": 1, "/admin/symbols/BTC-USD/mode": 1}
    keys = {(c.path, c.idempotency_key) for c in exchange.state.calls}
    assert len(keys) == 2  # any call made twice carried the same key
    assert len(await _fetch(database, "SELECT 1 FROM incidents")) == 1
    verified = await asyncio.to_thread(audit_verify, database)
    assert verified.returncode == 0, verified.stderr
