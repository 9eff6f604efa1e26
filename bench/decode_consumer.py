"""The yardstick for bench/metrics.py: a Kafka consumer that only JSON-decodes each message.

It reads the metrics topic the way responder's metrics intake does (same client settings,
``getmany`` of up to 500 records, one offset commit per batch) and does nothing with a
message but ``json.loads`` it and count its samples. After each batch it notes the time,
the samples so far and its own CPU; it prints those points as one JSON line when it has
read ``--samples``, so the bench times it exactly as it times the daemon.

Run by bench/metrics.py: ``python -m bench.decode_consumer --bootstrap H:P --topic T
--group G --samples N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

MAX_MESSAGE_BYTES = 1_048_576  # responder's default kafka_max_message_bytes
FETCH_MAX_WAIT_MS = 20  # responder's default kafka_fetch_max_wait_ms


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def consume(args: argparse.Namespace) -> list[tuple[float, int, float]]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import OffsetAndMetadata

    consumer = AIOKafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap, group_id=args.group,
        enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES + 1024,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    await consumer.start()
    points: list[tuple[float, int, float]] = []
    count = 0
    deadline = time.monotonic() + args.timeout_s
    try:
        while count < args.samples and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batch:
                continue
            for messages in batch.values():
                for msg in messages:
                    count += len(json.loads(msg.value)["samples"])
            await consumer.commit({tp: OffsetAndMetadata(messages[-1].offset + 1, "")
                                   for tp, messages in batch.items()})
            points.append((time.monotonic(), count, cpu_s()))
    finally:
        await consumer.stop()
    return points


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--samples", type=int, required=True)
    p.add_argument("--timeout-s", type=float, default=300.0)
    args = p.parse_args()
    points = asyncio.run(consume(args))
    print(json.dumps(points))
    return 0 if points and points[-1][1] >= args.samples else 1


if __name__ == "__main__":
    sys.exit(main())
