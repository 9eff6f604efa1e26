"""Drive Alertmanager webhooks at the floor, the DBOS peer and responder; compare them.

For each system and concurrency level: a fresh database, a fresh server subprocess, a short
warm-up, then N webhooks of one unique alert each from C senders. Latency runs from sending
a webhook to its admin call arriving at the in-process receiver, matched by symbol.

Run from the repository root: ``.venv/bin/python bench/run.py [--n 2000]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import footprint as db_footprint  # noqa: E402
from bench import profile as spy  # noqa: E402
from bench.cpu import (  # noqa: E402
    cpu_s,
    driver_cpu_s,
    host_probe_ms,
    machine_busy_s,
    postgres_cpu_s,
)
from bench.levels import QUIET_CAP_S, QUIET_S, QUIET_SHARE, SYSTEMS, Level, Sent  # noqa: E402
from bench.report import report  # noqa: E402

RESULTS = ROOT / "bench" / "results.md"
PEERS = {"floor": "bench.floor", "dbos": "bench.dbos_peer"}
PROFILED_CONCURRENCY = 8
WEBHOOK_TOKEN = "bench-webhook-token"
EXCHANGE_TOKEN = "bench-exchange-token"
STARTS_AT = "2026-11-23T05:32:58.043380198Z"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 30.0


class BenchError(Exception):
    """The benchmark could not run: a server did not start, a database could not be made."""


# --- The admin-call receiver: answers 200 to any PUT /admin/..., notes when symbols arrive.


@dataclass
class Receiver:
    arrivals_ns: dict[str, int] = field(default_factory=dict)
    repeats: int = 0
    other_calls: int = 0
    _pending: set[str] = field(default_factory=set)
    _all_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    levels: dict[str, str] = field(default_factory=dict)
    """What each PUT set, so responder's read-back finds what it applied."""

    async def symbol_mode(self, request: web.Request) -> web.Response:
        at_ns = time.monotonic_ns()
        symbol = request.match_info["symbol"]
        body = await request.json()
        self.levels[request.path] = body.get("mode", "")
        if symbol in self.arrivals_ns:
            self.repeats += 1
        else:
            self.arrivals_ns[symbol] = at_ns
            self._pending.discard(symbol)
            if not self._pending:
                self._all_arrived.set()
        return web.json_response({"mode": "CANCEL_ONLY"})

    async def other(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.levels[request.path] = next(iter(body.values()), "") if body else ""
        self.other_calls += 1
        return web.json_response({})

    async def read(self, request: web.Request) -> web.Response:
        field_name = "state" if request.path.endswith("/withdrawals") else "mode"
        lowest = "OPEN" if field_name == "state" else "NORMAL"
        return web.json_response({field_name: self.levels.get(request.path, lowest)})

    async def wait_for(self, symbols: list[str], timeout_s: float) -> None:
        """Return once every symbol has had its call, or when the timeout passes."""
        self._pending = {s for s in symbols if s not in self.arrivals_ns}
        self._all_arrived.clear()
        if not self._pending:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_arrived.wait(), timeout_s)


@contextlib.asynccontextmanager
async def serve_receiver(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_put("/admin/symbols/{symbol}/mode", receiver.symbol_mode)
    app.router.add_put("/admin/{tail:.*}", receiver.other)
    app.router.add_get("/admin/{tail:.*}", receiver.read)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def bench_rules() -> Path:
    """The shipped rules without their blast-radius caps: the bench sends thousands of
    symbols on purpose, which the guard exists to stop."""
    target = Path(tempfile.gettempdir()) / "responder-bench-rules"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(ROOT / "rules", target, ignore=shutil.ignore_patterns("tests"))
    for path in target.glob("*.yaml"):
        path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                                if not line.lstrip().startswith("storm:")))
    return target


# --- Databases and server processes.


@contextlib.asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    """A new, empty database, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{admin_dsn.rpartition('/')[0]}/{name}"
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    proc: asyncio.subprocess.Process
    log: Path


def _command(system: str, listen: str, dsn: str, exchange_url: str,
             floor_uvloop: bool = False) -> tuple[list[str], str]:
    """The server's command line and its readiness path. The floor runs on asyncio's own
    loop, as most aiohttp services do, unless ``floor_uvloop`` (responder's loop)."""
    if system == "responder":
        return [sys.executable, "-m", "responder", "run"], "/readyz"
    extra = ["--uvloop"] if system == "floor" and floor_uvloop else []
    return [sys.executable, "-m", PEERS[system], "--listen", listen, "--dsn", dsn,
            "--exchange-url", exchange_url, "--exchange-token", EXCHANGE_TOKEN, *extra], "/healthz"


def _environment(listen: str, dsn: str, exchange_url: str) -> dict[str, str]:
    # Inherited RESPONDER_* settings (a config file, say) would change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    env.update(RESPONDER_LISTEN=listen, RESPONDER_DATABASE_URL=dsn,
               RESPONDER_RULES_DIR=str(bench_rules()), RESPONDER_WEBHOOK_TOKENS=WEBHOOK_TOKEN,
               RESPONDER_STORM_MAX_INCIDENTS="1000000",
               RESPONDER_LOG_LEVEL="warning", RESPONDER_EXCHANGE_URL=exchange_url,
               RESPONDER_EXCHANGE_TOKEN=EXCHANGE_TOKEN)
    return env


def log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@contextlib.asynccontextmanager
async def start_server(system: str, dsn: str, exchange_url: str,
                       log: Path, floor_uvloop: bool = False) -> AsyncIterator[Server]:
    """Start the server as a subprocess; it is always stopped, killed if need be."""
    listen = f"127.0.0.1:{free_port()}"
    cmd, ready_path = _command(system, listen, dsn, exchange_url, floor_uvloop)
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=ROOT, env=_environment(listen, dsn, exchange_url),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://{listen}", proc, log)
    try:
        await wait_ready(server, ready_path)
        yield server
    finally:
        await stop(proc)


async def wait_ready(server: Server, path: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while time.monotonic() < deadline:
            if server.proc.returncode is not None:
                raise BenchError(f"server exited with {server.proc.returncode}:\n"
                                 f"{log_tail(server.log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(server.url + path) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise BenchError(f"server not ready after {READY_TIMEOUT_S:.0f}s:\n{log_tail(server.log)}")


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def until_quiet(pids: list[int]) -> float:
    """Wait until the processes have together used under QUIET_SHARE of a core for QUIET_S
    (or QUIET_CAP_S has passed); how long that took. The work an alert leaves behind (its
    read-back, outcome, evidence, deliveries) is part of its cost, however late it runs."""
    step = 0.25
    window = round(QUIET_S / step)
    started = time.monotonic()
    used: list[float] = [sum(cpu_s(p) or 0.0 for p in pids)]
    while time.monotonic() - started < QUIET_CAP_S:
        await asyncio.sleep(step)
        used.append(sum(cpu_s(p) or 0.0 for p in pids))
        if len(used) > window and used[-1] - used[-1 - window] < QUIET_SHARE * QUIET_S:
            break
    return time.monotonic() - started


def _cpu(pid: int) -> tuple[float | None, ...]:
    """CPU seconds so far of the server, the machine, PostgreSQL and this driver."""
    return cpu_s(pid), machine_busy_s(), postgres_cpu_s(), driver_cpu_s()


def _per_alert(before: float | None, after: float | None, alerts: int) -> float | None:
    if before is None or after is None or not alerts:
        return None
    return (after - before) * 1000 / alerts


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of one process (not its children, not PostgreSQL)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


# --- Payloads and the driver.


def _base36(n: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def payloads(numbers: range) -> list[tuple[str, bytes]]:
    """One webhook per number, each with one alert with its own symbol and fingerprint."""
    out = []
    for n in numbers:
        symbol = f"S{_base36(n)}-USD"
        labels = {"alertname": "LedgerInvariantViolation", "severity": "sev1", "symbol": symbol}
        alert = {"status": "firing", "labels": labels, "annotations": {"summary": "bench"},
                 "startsAt": STARTS_AT, "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": "", "fingerprint": f"bench{n:011x}"}
        body = {"receiver": "responder", "status": "firing", "alerts": [alert],
                "groupLabels": {"alertname": labels["alertname"]}, "commonLabels": labels,
                "commonAnnotations": alert["annotations"], "externalURL": "http://bench",
                "version": "4", "groupKey": f'{{}}:{{symbol="{symbol}"}}',
                "truncatedAlerts": 0}
        out.append((symbol, json.dumps(body).encode()))
    return out


async def send(server: Server, items: list[tuple[str, bytes]], concurrency: int,
               timeout_s: float) -> Sent:
    """POST every payload from ``concurrency`` senders over kept-alive connections."""
    result = Sent()
    queue: Iterator[tuple[str, bytes]] = iter(items)
    url = server.url + "/webhooks/alertmanager"

    async def sender(session: aiohttp.ClientSession) -> None:
        for symbol, body in queue:
            result.sent_ns[symbol] = time.monotonic_ns()
            try:
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as e:
                result.failures[type(e).__name__] += 1
                continue
            if 200 <= status < 300:
                result.acked.append(symbol)
            else:
                result.failures[f"HTTP {status}"] += 1

    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(
        headers=headers, connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    ) as session:
        result.started_ns = time.monotonic_ns()
        try:
            async with asyncio.timeout(timeout_s), asyncio.TaskGroup() as tg:
                for _ in range(concurrency):
                    tg.create_task(sender(session))
        except TimeoutError:
            result.timed_out = True
        result.wall_s = (time.monotonic_ns() - result.started_ns) / 1e9
    return result


# --- One measured level.


def level_notes(system: str, sent: Sent, *, others: int, repeats: int,
                args: argparse.Namespace, log: Path) -> list[str]:
    """What went wrong or looked odd in one level."""
    notes = [f"{count} x {what}" for what, count in sent.failures.most_common()]
    # responder halts withdrawals once per fresh database; the peers make no other call.
    expected_others = 1 if system == "responder" else 0
    if others != expected_others:
        notes.append(f"{others} admin calls other than symbol mode (expected {expected_others})")
    if repeats:
        notes.append(f"{repeats} symbol-mode calls repeated for a symbol already called")
    if sent.timed_out:
        notes.append(f"send phase stopped at --level-timeout-s {args.level_timeout_s}")
    if tail := log_tail(log, 5):
        notes.append("server output (last lines):\n" + tail)
    return notes


async def snapshot(args: argparse.Namespace, dsn: str) -> db_footprint.Snapshot:
    rows, sizes = await db_footprint.tables(dsn)
    stats = await db_footprint.database_stats(args.admin_dsn, dsn.rpartition("/")[2])
    return db_footprint.Snapshot(stats, rows, sizes)


async def measure(system: str, concurrency: int, *, args: argparse.Namespace,
                  receiver: Receiver, exchange_url: str, first: int, log: Path,
                  profile_to: Path | None = None) -> Level:
    """One level: fresh database and server, warm-up, then the measured webhooks.

    With ``args.footprint`` the database's counters are read around the measured webhooks;
    with ``profile_to`` py-spy samples the server while they are sent and handled."""
    warmup = payloads(range(first, first + args.warmup))
    items = payloads(range(first + args.warmup, first + args.warmup + args.n))
    others_before, repeats_before = receiver.other_calls, receiver.repeats
    before = after = None
    spy_command: list[str] = []
    async with fresh_database(args.admin_dsn) as dsn:
        async with start_server(system, dsn, exchange_url, log,
                                args.floor_uvloop) as server:
            if warmup:
                done = await send(server, warmup, concurrency, args.level_timeout_s)
                await receiver.wait_for(done.acked, args.calls_timeout_s)
                await until_quiet([server.proc.pid])  # the warm-up's evidence is not measured
            if args.footprint and profile_to is None:
                await asyncio.sleep(db_footprint.SETTLE_S)
                before = await snapshot(args, dsn)
            async with contextlib.AsyncExitStack() as stack:
                if profile_to is not None:
                    spy_command = await stack.enter_async_context(
                        spy.recording(server.proc.pid, profile_to, log.with_suffix(".spy")))
                probe_before = host_probe_ms()
                before_cpu = _cpu(server.proc.pid)
                sent = await send(server, items, concurrency, args.level_timeout_s)
                await receiver.wait_for(sent.acked, args.calls_timeout_s)
                quiet_s = await until_quiet([server.proc.pid])
                after_cpu = _cpu(server.proc.pid)
                probe_after = host_probe_ms()
            rss = peak_rss_mib(server.proc.pid)
            if before is not None:
                after = await snapshot(args, dsn)
        if after is not None:
            # Read once the server's sessions have ended and flushed their counters.
            after.stats = await db_footprint.settled_stats(args.admin_dsn,
                                                           dsn.rpartition("/")[2])
    arrivals = [(s, receiver.arrivals_ns[s]) for s in sent.sent_ns if s in receiver.arrivals_ns]
    latencies = sorted((at - sent.sent_ns[s]) / 1e6 for s, at in arrivals)
    last_ns = max((at for _, at in arrivals), default=sent.started_ns)
    span_s = (last_ns - sent.started_ns) / 1e9
    notes = level_notes(system, sent, others=receiver.other_calls - others_before,
                        repeats=receiver.repeats - repeats_before, args=args, log=log)
    server_ms, machine_ms, postgres_ms, driver_ms = (
        _per_alert(b, a, len(sent.acked)) for b, a in zip(before_cpu, after_cpu, strict=True))
    level = Level(system, concurrency, sent, latencies, len(arrivals),
                  len(arrivals) / span_s if span_s > 0 else 0.0, rss, notes, server_ms,
                  machine_ms, postgres_ms_per_alert=postgres_ms, driver_ms_per_alert=driver_ms,
                  profile_command=spy_command, quiet_s=quiet_s,
                  host_probe_ms=(probe_before, probe_after))
    if before is not None and after is not None and sent.acked:
        level.footprint = db_footprint.footprint(
            before, after, len(sent.acked), span_s + quiet_s)
    if profile_to is not None:
        level.profile = spy.load(profile_to)
    return level


async def postgres_version(admin_dsn: str) -> str:
    try:
        conn = await asyncpg.connect(admin_dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as e:
        raise BenchError(f"cannot reach PostgreSQL at --admin-dsn: {e}") from e
    try:
        version: str = await conn.fetchval("SHOW server_version")
        return version
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> str:
    # SIGTERM cancels the run, so the finally blocks stop every server and drop every database.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    pg_version = await postgres_version(args.admin_dsn)
    systems = [args.only] if args.only else list(SYSTEMS)
    first = 1  # alert numbers run on across levels, so no symbol is ever reused
    levels = []
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as logs:
        async with serve_receiver(receiver) as exchange_url:
            # Rounds and systems interleave, so a slow spell of a shared machine falls on
            # both systems rather than on one.
            for round_no in range(1, args.rounds + 1):
                for c in args.concurrency:
                    for system in systems:
                        print(f"round {round_no}: {system} at concurrency {c} ...",
                              file=sys.stderr, flush=True)
                        log = Path(logs) / f"{system}-{c}-{round_no}.log"
                        levels.append(await measure(system, c, args=args, receiver=receiver,
                                                    exchange_url=exchange_url, first=first,
                                                    log=log))
                        first += args.warmup + args.n
            if args.profile:
                print(f"profile: responder at concurrency {args.profile_concurrency[0]} ...",
                      file=sys.stderr, flush=True)
                log = Path(logs) / "responder-profiled.log"
                levels.append(await measure(
                    "responder", args.profile_concurrency[0], args=args, receiver=receiver,
                    exchange_url=exchange_url, first=first, log=log,
                    profile_to=args.profile_out or Path(logs) / "responder.spy.txt"))
    return report(levels, args, pg_version)


def _concurrency(value: str) -> list[int]:
    try:
        levels = [int(v) for v in value.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError("expected integers like 1,8,32") from e
    if not levels or any(c < 1 or c > 1024 for c in levels):
        raise argparse.ArgumentTypeError("each concurrency must be 1..1024")
    return levels


def _count(value: str) -> int:
    n = int(value)
    if not 0 <= n <= 1_000_000:
        raise argparse.ArgumentTypeError("must be 0..1000000")
    return n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=_count, default=2000, help="webhooks per level (default 2000)")
    p.add_argument("--warmup", type=_count, default=100, help="warm-up webhooks per level")
    p.add_argument("--concurrency", type=_concurrency, default=[1, 8, 32],
                   help="comma-separated sender counts (default 1,8,32)")
    p.add_argument("--only", choices=SYSTEMS, help="measure one system")
    p.add_argument("--rounds", type=_count, default=1,
                   help="measure every level this many times; the table shows medians")
    p.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="where to create and drop the per-level databases")
    p.add_argument("--level-timeout-s", type=float, default=120.0,
                   help="cap on each level's send phase")
    p.add_argument("--calls-timeout-s", type=float, default=30.0,
                   help="cap on waiting for admin calls after the last send")
    p.add_argument("--footprint", action="store_true",
                   help="count commits, rows and bytes per alert from PostgreSQL"
                   f" (adds {db_footprint.SETTLE_S:.0f} s per level)")
    p.add_argument("--profile", action="store_true",
                   help="after the rounds, one more responder level at concurrency"
                   f" {PROFILED_CONCURRENCY} sampled with py-spy")
    p.add_argument("--profile-out", type=Path,
                   help="keep py-spy's collapsed stacks of the --profile level in this file")
    p.add_argument("--profile-concurrency", type=_concurrency, default=[PROFILED_CONCURRENCY],
                   help=f"senders of the --profile level (default {PROFILED_CONCURRENCY})")
    p.add_argument("--floor-uvloop", action="store_true",
                   help="run the floor on uvloop, the event loop responder runs on")
    p.add_argument("--no-results-file", action="store_true", help=f"do not write {RESULTS}")
    args = p.parse_args()
    try:
        text = asyncio.run(run(args))
    except (BenchError, spy.ProfilerError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; servers stopped, databases dropped", file=sys.stderr)
        return 130
    print(text)
    if not args.no_results_file:
        RESULTS.write_text(text, encoding="utf-8")
        print(f"written to {os.path.relpath(RESULTS)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
