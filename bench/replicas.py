"""1, 2 and 3 responder replicas on one shared PostgreSQL: throughput, and the store's cost.

For each replica count N: a fresh database, N ``python -m responder run`` processes on it
(``RESPONDER_REPLICA_ID`` replica-1..N, a port each), a warm-up, then ``--n`` webhooks of
one alert each, sent round-robin over the replicas by ``--concurrency`` senders. Each alert
has its own symbol, so it is one containment call at the bench's admin receiver
(bench/run.py's). Reported per N:

- contained/s (calls arrived over first send to last call) and the call p50;
- the store's cost over the measured alerts, from PostgreSQL itself (bench/footprint.py):
  commits/s and per alert (``pg_stat_database.xact_commit`` delta), rows inserted and
  updated per alert (``pg_stat_user_tables`` ``n_tup_ins``/``n_tup_upd`` deltas) and bytes
  kept per alert (``pg_total_relation_size`` deltas);
- exactly once: every symbol called once and only once at the admin receiver, and the one
  global step of the run (the withdrawals halt) called once, whichever replica took it.

The machine has two cores: more replicas share the same CPU, so contained/s does not grow
with N here. What the run shows is the store's cost per alert as replicas are added, and
that the replicas never run a step twice.

Run from the repository root: ``.venv/bin/python bench/replicas.py [--replicas 1,2,3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import footprint as db_footprint  # noqa: E402
from bench.cpu import cpu_s, machine_busy_s  # noqa: E402
from bench.run import (  # noqa: E402
    WEBHOOK_TOKEN,
    BenchError,
    Receiver,
    Server,
    _environment,
    free_port,
    fresh_database,
    payloads,
    serve_receiver,
    stop,
    until_quiet,
    wait_ready,
)

RESULTS = ROOT / "bench" / "results.md"
SECTION = "## Replicas on one PostgreSQL (bench/replicas.py)"
REQUEST_TIMEOUT_S = 30.0
IDLE_S = 10.0
OWN_READ = 1
"""Commits of one of the bench's own reads in the bench database."""
USER_TABLES = ("SELECT coalesce(sum(n_tup_ins), 0) AS ins, coalesce(sum(n_tup_upd), 0) AS upd"
               " FROM pg_stat_user_tables")


@dataclass
class Level:
    replicas: int
    acked: int
    arrived: int
    contained_per_s: float
    p50_ms: float | None
    repeats: int
    global_calls: int
    missing: int
    commits_per_alert: float
    commits_per_s: float
    inserted_per_alert: float
    updated_per_alert: float
    kept_per_alert: float
    bytes_per_alert: float
    daemon_cpu_ms: float
    machine_cpu_ms: float
    idle_commits_per_s: float = 0.0
    kept_by_table: dict[str, tuple[float, float]] = field(default_factory=dict)
    """table -> (rows, bytes) kept per alert."""
    per_replica: dict[str, int] = field(default_factory=dict)
    failures: int = 0

    @property
    def once(self) -> bool:
        return self.repeats == 0 and self.missing == 0 and self.global_calls == 1


@contextlib.asynccontextmanager
async def replicas(n: int, dsn: str, exchange_url: str,
                   logs: Path) -> AsyncIterator[list[Server]]:
    """N daemons on one database, started together (their migrations race, as in a real
    roll-out); every one is stopped at the end."""
    servers = []
    for i in range(1, n + 1):
        listen = f"127.0.0.1:{free_port()}"
        env = _environment(listen, dsn, exchange_url)
        env["RESPONDER_REPLICA_ID"] = f"replica-{i}"
        log = logs / f"replicas-{n}-{i}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "responder", "run", cwd=ROOT, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT)
        servers.append(Server(f"http://{listen}", proc, log))
    try:
        await asyncio.gather(*(wait_ready(s, "/readyz") for s in servers))
        yield servers
    finally:
        await asyncio.gather(*(stop(s.proc) for s in servers))


async def send(servers: list[Server], items: list[tuple[str, bytes]],
               concurrency: int) -> tuple[dict[str, int], list[str], int, int]:
    """POST every payload, round-robin over the replicas; (sent_ns, acked, failures, t0)."""
    urls = itertools.cycle([s.url + "/webhooks/alertmanager" for s in servers])
    queue = iter(items)
    sent_ns: dict[str, int] = {}
    acked: list[str] = []
    failures = 0

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for symbol, body in queue:
            sent_ns[symbol] = time.monotonic_ns()
            try:
                async with session.post(next(urls), data=body) as resp:
                    await resp.read()
                    ok = 200 <= resp.status < 300
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                acked.append(symbol)
            else:
                failures += 1

    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as session:
        started = time.monotonic_ns()
        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(sender(session))
    return sent_ns, acked, failures, started


async def user_tables(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(USER_TABLES)
    finally:
        await conn.close()
    assert row is not None
    return int(row["ins"]), int(row["upd"])


async def by_replica(dsn: str) -> dict[str, int]:
    """Steps per replica that claimed them, where the store still says so."""
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch("SELECT coalesce(claimed_by, '?') || ' ' || status AS who,"
                                 " count(*) AS n FROM steps GROUP BY 1 ORDER BY 1")
    except asyncpg.PostgresError:
        return {}
    finally:
        await conn.close()
    return {r["who"]: int(r["n"]) for r in found}


async def counters(admin_dsn: str, dsn: str) -> tuple[float, dict[str, int], tuple[int, int]]:
    """(now, pg_stat_database counters, rows inserted and updated so far); the second read
    is one commit in the bench database (OWN_READ)."""
    stats = await db_footprint.database_stats(admin_dsn, dsn.rpartition("/")[2])
    return time.monotonic(), stats, await user_tables(dsn)


async def measure(n: int, args: argparse.Namespace, receiver: Receiver, exchange_url: str,
                  first: int, logs: Path) -> Level:
    """One replica count. Idle replicas commit too (leader checks, sweeps), so an idle
    window of ``IDLE_S`` before the measured alerts gives their background rate, which is
    taken off the measured window's commits and row changes."""
    warmup = payloads(range(first, first + args.warmup))
    items = payloads(range(first + args.warmup, first + args.warmup + args.n))
    others_before, repeats_before = receiver.other_calls, receiver.repeats
    async with fresh_database(args.admin_dsn) as dsn:
        database = dsn.rpartition("/")[2]
        async with replicas(n, dsn, exchange_url, logs) as servers:
            if warmup:
                _, done, _, _ = await send(servers, warmup, args.concurrency)
                await receiver.wait_for(done, args.calls_timeout_s)
            await asyncio.sleep(db_footprint.SETTLE_S)  # the warm-up's counters flushed
            idle_at, idle_stats, idle_tup = await counters(args.admin_dsn, dsn)
            await asyncio.sleep(IDLE_S)
            t0, stats_before, tup_before = await counters(args.admin_dsn, dsn)
            rows_before, sizes_before = await db_footprint.tables(dsn)
            pids = [s.proc.pid for s in servers]
            cpu_before = [cpu_s(p) or 0.0 for p in pids]
            busy_before = machine_busy_s() or 0.0
            sent_ns, acked, failures, started = await send(servers, items, args.concurrency)
            await receiver.wait_for(acked, args.calls_timeout_s)
            quiet_s = await until_quiet(pids)
            cpu_after = [cpu_s(p) or 0.0 for p in pids]
            busy_after = machine_busy_s() or 0.0
            await asyncio.sleep(db_footprint.SETTLE_S)  # n_tup_* flushed by live sessions
            tup_after = await user_tables(dsn)
            rows_after, sizes_after = await db_footprint.tables(dsn)
            steps = await by_replica(dsn)
            t1 = time.monotonic()
        # Commits once the replicas' sessions have ended and flushed their counters.
        stats_after = await db_footprint.settled_stats(args.admin_dsn, database)
    idle_s = t0 - idle_at

    def background(before: float, after: float, reads: int) -> float:
        return (after - before - reads) / idle_s * (t1 - t0)

    commits_bg = background(idle_stats.get("xact_commit", 0),
                            stats_before.get("xact_commit", 0), OWN_READ)
    ins_bg = background(idle_tup[0], tup_before[0], 0)
    upd_bg = background(idle_tup[1], tup_before[1], 0)
    arrivals = {s: receiver.arrivals_ns[s] for s in sent_ns if s in receiver.arrivals_ns}
    latencies = sorted((at - sent_ns[s]) / 1e6 for s, at in arrivals.items())
    last = max(arrivals.values(), default=started)
    span_s = (last - started) / 1e9
    alerts = max(len(acked), 1)
    # In the measured window: the bench's own reads (five) and the replicas' idle work.
    commits = (stats_after.get("xact_commit", 0) - stats_before.get("xact_commit", 0)
               - 5 * OWN_READ - commits_bg)
    return Level(
        replicas=n, acked=len(acked), arrived=len(arrivals),
        contained_per_s=len(arrivals) / span_s if span_s > 0 else 0.0,
        p50_ms=statistics.median(latencies) if latencies else None,
        repeats=receiver.repeats - repeats_before,
        global_calls=receiver.other_calls - others_before,
        missing=len(acked) - len(arrivals),
        commits_per_alert=commits / alerts, commits_per_s=commits / (span_s + quiet_s),
        inserted_per_alert=(tup_after[0] - tup_before[0] - ins_bg) / alerts,
        updated_per_alert=(tup_after[1] - tup_before[1] - upd_bg) / alerts,
        kept_per_alert=(sum(rows_after.values()) - sum(rows_before.values())) / alerts,
        bytes_per_alert=(sum(sizes_after.values()) - sum(sizes_before.values())) / alerts,
        daemon_cpu_ms=sum(a - b for a, b in zip(cpu_after, cpu_before, strict=True))
        * 1000 / alerts,
        machine_cpu_ms=(busy_after - busy_before) * 1000 / alerts,
        idle_commits_per_s=commits_bg / (t1 - t0), per_replica=steps, failures=failures,
        kept_by_table={t: ((rows_after.get(t, 0) - rows_before.get(t, 0)) / alerts,
                           (sizes_after[t] - sizes_before.get(t, 0)) / alerts)
                       for t in sizes_after})


def report(levels: list[Level], args: argparse.Namespace) -> str:
    lines = [
        SECTION, "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC; nproc {os.cpu_count()},"
        f" Python {platform.python_version()}; load average at the end"
        f" {os.getloadavg()[0]:.2f}",
        f"- command: `.venv/bin/python bench/replicas.py --replicas"
        f" {','.join(map(str, args.replicas))} --n {args.n} --warmup {args.warmup}"
        f" --concurrency {args.concurrency}`",
        "- each alert its own symbol, so one containment call; webhooks round-robin over the"
        " replicas; all replicas, PostgreSQL and the bench share the machine's 2 cores",
        "",
        "| replicas | contained/s | call p50 ms | commits/s | commits/alert |"
        " rows inserted/alert | rows updated/alert | rows kept/alert | bytes kept/alert |"
        " daemons' CPU ms/alert | machine CPU ms/alert | each step once |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for lv in levels:
        p50 = "n/a" if lv.p50_ms is None else f"{lv.p50_ms:.1f}"
        once = ("yes" if lv.once else "NO") + (
            f": {lv.arrived}/{lv.acked} symbols called, {lv.repeats} repeated,"
            f" global halt called {lv.global_calls}x")
        lines.append(
            f"| {lv.replicas} | {lv.contained_per_s:,.0f} | {p50} | {lv.commits_per_s:,.0f} |"
            f" {lv.commits_per_alert:.2f} | {lv.inserted_per_alert:.1f} |"
            f" {lv.updated_per_alert:.1f} | {lv.kept_per_alert:.1f} | {lv.bytes_per_alert:,.0f} |"
            f" {lv.daemon_cpu_ms:.1f} | {lv.machine_cpu_ms:.1f} | {once} |")
    lines += ["", "Commits and row changes are net of the replicas' idle work (leader checks,"
              f" sweeps), measured over {IDLE_S:.0f} s of quiet before the alerts; rows"
              " inserted count every insert, kept or rolled back (`n_tup_ins`); rows kept are"
              " `count(*)` deltas.", ""]
    for lv in levels:
        top = sorted(lv.kept_by_table.items(), key=lambda kv: -kv[1][1])[:8]
        lines.append(f"- {lv.replicas} replica(s), kept per alert by table (rows, bytes): "
                     + "; ".join(f"{t} {r:.1f}, {b:,.0f}" for t, (r, b) in top if r or b))
    for lv in levels:
        if lv.per_replica:
            who = ", ".join(f"{k} {v}" for k, v in lv.per_replica.items())
            lines.append(f"- {lv.replicas} replica(s): steps by `steps.claimed_by`: {who}"
                         + (f"; {lv.failures} webhooks not answered 2xx" if lv.failures
                            else ""))
    return "\n".join([*lines, ""])


def record(section: str) -> None:
    """Put the section into results.md, replacing an earlier one."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    head, _, rest = text.partition(SECTION)
    tail = rest[rest.find("\n## ", 1) + 1:] if "\n## " in rest else ""
    RESULTS.write_text(head.rstrip() + "\n\n" + section + ("\n" + tail if tail else ""),
                       encoding="utf-8")


async def run(args: argparse.Namespace) -> list[Level]:
    # SIGTERM cancels the run, so the finally blocks stop every daemon and drop every database.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    levels = []
    receiver = Receiver()
    first = 10_000_000  # symbols of their own, apart from bench/run.py's
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as logs:
        async with serve_receiver(receiver) as exchange_url:
            for n in args.replicas:
                print(f"replicas: {n} ...", file=sys.stderr, flush=True)
                levels.append(await measure(n, args, receiver, exchange_url, first,
                                            Path(logs)))
                first += args.warmup + args.n
    return levels


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=lambda v: [int(x) for x in v.split(",")],
                   default=[1, 2, 3], help="replica counts to run, in order (default 1,2,3)")
    p.add_argument("--n", type=int, default=600, help="measured webhooks per level")
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--calls-timeout-s", type=float, default=60.0)
    p.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--no-results-file", action="store_true")
    args = p.parse_args()
    try:
        levels = asyncio.run(run(args))
    except BenchError as e:
        print(f"bench failed: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; daemons stopped, databases dropped", file=sys.stderr)
        return 130
    section = report(levels, args)
    print(section)
    if not args.no_results_file:
        record(section)
    return 0 if all(lv.once for lv in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
