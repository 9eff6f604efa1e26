"""Time the takeover drills against the 2 s target: a replica SIGKILLed mid-call.

Each round: a fresh database, the simulated exchange in this process, two daemon
processes (replica-a, replica-b) with the shipped rules and default leases (10 s). One
alert goes to replica-a; while its first admin call is held at the exchange, replica-a is
SIGKILLed and the exchange stops holding new calls (the orphaned one is held on, and
applied, 8 s after it arrived, as a slow real server would). Timed from the kill:

- ``survivor``: until replica-b's call with the killed step's Idempotency-Key reaches the
  exchange (``call``) and until the step's outcome is in the store (``done``);
- ``restart`` (``--restart``): replica-b is not started; replica-a is started again on its
  data directory and does the same (``restart listen``: how much of that is the new
  process starting until it listens, which is when it resumes its steps);
- ``leader``: after the survivor drill, the replica leading the reconciler is SIGKILLed and
  the time until the other reports itself leader (its ``responder_leader`` gauge);
- ``outbox``: with a webhook sink that holds the first delivery, the replica delivering it
  is SIGKILLed; until the other has delivered the row (its lease is 30 s).

Run from the repository root: ``.venv/bin/python bench/takeover.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.exchange import STATE, ExchangeState, Faults, make_app  # noqa: E402

ADMIN_DSN = os.environ.get("RESPONDER_TEST_DATABASE_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_S = 2.0
HOLD_S = 8.0
WEBHOOK_TOKEN = "bench-takeover-webhook-token"
EXCHANGE_TOKEN = "bench-takeover-exchange-token"
ALERT = (ROOT / "tests" / "fixtures" / "firing-single.json").read_bytes()
LEADER = 'responder_leader{role="reconciler"}'


@dataclass
class Replica:
    name: str
    popen: subprocess.Popen[bytes]
    port: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "responder", "run"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 60,
                every_s: float = 0.01) -> float:
    """Poll ``check``; the monotonic time it first held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return time.monotonic()
        await asyncio.sleep(every_s)
    raise TimeoutError(f"timed out waiting for {what}")


class Drill:
    """One round's database, exchange and daemon processes."""

    def __init__(self, work: Path, exchange_url: str, state: ExchangeState,
                 env: dict[str, str]) -> None:
        self.work = work
        self.env = env
        self.exchange_url = exchange_url
        self.state = state
        self.dsn = ""
        self.replicas: list[Replica] = []

    async def create_db(self) -> None:
        name = f"bench_takeover_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self.dsn = ADMIN_DSN.rpartition("/")[0] + f"/{name}"

    async def drop_db(self) -> None:
        name = self.dsn.rpartition("/")[2]
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def start(self, name: str) -> Replica:
        port = free_port()
        env = {**os.environ, "RESPONDER_DATABASE_URL": self.dsn,
               "RESPONDER_RULES_DIR": str(ROOT / "rules"),
               "RESPONDER_WEBHOOK_TOKENS": WEBHOOK_TOKEN,
               "RESPONDER_EXCHANGE_URL": self.exchange_url,
               "RESPONDER_EXCHANGE_TOKEN": EXCHANGE_TOKEN,
               "RESPONDER_REPLICA_ID": name, "RESPONDER_DATA_DIR": str(self.work / name),
               "RESPONDER_RECONCILE_INTERVAL_S": "1", "RESPONDER_LOG_LEVEL": "warning",
               "RESPONDER_LISTEN": f"127.0.0.1:{port}", **self.env}
        popen = await asyncio.to_thread(spawn, env, self.work / f"{name}.log")
        replica = Replica(name, popen, port)
        self.replicas.append(replica)

        async def listening() -> bool:
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited early; see {self.work / name}.log")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return False
            writer.close()
            return True

        await until(f"{name} to listen", listening, every_s=0.05)
        return replica

    async def fetchval(self, sql: str, *args: object) -> object:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    def stop_all(self) -> None:
        for r in self.replicas:
            if r.popen.poll() is None:
                r.popen.kill()
                r.popen.wait(10)


async def kill_mid_call(drill: Drill, http: aiohttp.ClientSession,
                        victim: Replica) -> tuple[float, float, str]:
    """Send the alert, SIGKILL ``victim`` while its call is held; (kill monotonic, kill
    wall-clock, the claimed step's key)."""
    # Held long enough that the orphaned call (recorded when it finishes) cannot be taken
    # for the takeover's: the first call with the key recorded after the kill is the new one.
    drill.state.faults = Faults(delay_s=HOLD_S)
    async with http.post(f"http://127.0.0.1:{victim.port}/webhooks/alertmanager", data=ALERT,
                         headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}) as resp:
        assert resp.status == 200, resp.status

    async def in_flight() -> bool:
        return drill.state.total_inflight > 0

    await until("a call in flight", in_flight, every_s=0.005)
    key = await drill.fetchval("SELECT idempotency_key FROM steps WHERE status = 'pending'"
                               " AND claimed_by = $1 AND lease_until > now()", victim.name)
    assert isinstance(key, str)
    wall, mono = time.time(), time.monotonic()
    victim.popen.kill()
    drill.state.faults = Faults()  # the survivor's call is answered at once
    await asyncio.to_thread(victim.popen.wait, 10)
    return mono, wall, key


async def completion(drill: Drill, killed_mono: float, killed_wall: float,
                     key: str, by: str) -> tuple[float, float]:
    """(kill -> the call with ``key`` from ``by`` arrives, kill -> the step's outcome)."""
    async def closed() -> bool:
        return bool(await drill.fetchval("SELECT status <> 'pending' FROM steps"
                                         " WHERE idempotency_key = $1", key))

    done = await until("the killed step closed", closed) - killed_mono
    later = [c.at for c in drill.state.calls if c.idempotency_key == key and c.at > killed_wall]
    assert not later or min(later) - killed_wall < HOLD_S - 0.5, "the orphan, not a takeover"
    taken = await drill.fetchval("SELECT body::jsonb -> 'detail' ->> 'by' FROM action_log"
                                 " WHERE kind = 'step_taken_over'")
    if by == "replica-b":
        assert taken == by, f"no takeover by {by} recorded ({taken})"
    return (min(later) - killed_wall if later else float("nan")), done


async def leader_of(http: aiohttp.ClientSession, replica: Replica) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{replica.port}/metrics") as resp:
            text = await resp.text()
    except aiohttp.ClientError:
        return False
    return any(line.startswith(LEADER) and line.endswith(" 1.0") for line in text.splitlines())


class HoldFirst:
    """A webhook sink that never answers its first delivery, and accepts the rest."""

    def __init__(self) -> None:
        self.held = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if not self.held.is_set():
            self.held.set()
            await asyncio.sleep(3600)
        return web.Response(status=204)


async def outbox_drill(drill: Drill, http: aiohttp.ClientSession,
                       sink: HoldFirst) -> float:
    """Kill the replica delivering a row while the sink holds it; kill -> row delivered."""
    a, b = await asyncio.gather(drill.start("replica-a"), drill.start("replica-b"))
    async with http.post(f"http://127.0.0.1:{a.port}/webhooks/alertmanager", data=ALERT,
                         headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}) as resp:
        assert resp.status == 200, resp.status
    await asyncio.wait_for(sink.held.wait(), timeout=60)
    conn = await asyncpg.connect(drill.dsn)
    try:
        row = await conn.fetchrow("SELECT id, claimed_by FROM outbox WHERE status = 'pending'"
                                  " AND attempts = 1 AND next_attempt_at > now()")
    finally:
        await conn.close()
    assert row is not None
    victim = a if row["claimed_by"] == a.name else b
    killed = time.monotonic()
    victim.popen.kill()

    async def delivered() -> bool:
        return bool(await drill.fetchval("SELECT status = 'delivered' FROM outbox"
                                         " WHERE id = $1", row["id"]))

    return await until("the held row delivered", delivered) - killed


async def one_round(kind: str, http: aiohttp.ClientSession) -> dict[str, float]:
    app = make_app(EXCHANGE_TOKEN)
    sink = HoldFirst()
    app.router.add_post("/hook", sink.handle)  # the sink, beside the exchange
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    env: dict[str, str] = {}
    if kind == "outbox":
        env["RESPONDER_SINKS"] = (f'[{{"name": "hook", "kind": "webhook", "url":'
                                  f' "http://127.0.0.1:{runner.addresses[0][1]}/hook"}}]')
    work = Path(tempfile.mkdtemp(prefix="bench-takeover-"))
    drill = Drill(work, f"http://127.0.0.1:{runner.addresses[0][1]}", app[STATE], env)
    await drill.create_db()
    out: dict[str, float] = {}
    try:
        if kind == "outbox":
            out["outbox"] = await outbox_drill(drill, http, sink)
            return out
        if kind == "restart":
            a = await drill.start("replica-a")
            mono, wall, key = await kill_mid_call(drill, http, a)
            await drill.start("replica-a")
            listening = time.monotonic()
            out["restart call"], out["restart done"] = await completion(
                drill, mono, wall, key, "replica-a")
            out["restart listen"] = listening - mono  # of which the new process's start
            return out
        a, b = await asyncio.gather(drill.start("replica-a"), drill.start("replica-b"))
        mono, wall, key = await kill_mid_call(drill, http, a)
        out["survivor call"], out["survivor done"] = await completion(
            drill, mono, wall, key, "replica-b")
        # Leadership: replica-a is dead, so replica-b leads (or soon will). Then start
        # replica-a again, kill replica-b (the leader) and time replica-a taking the role.
        async def b_leads() -> bool:
            return await leader_of(http, b)

        await until("replica-b to lead", b_leads, every_s=0.05)
        a = await drill.start("replica-a")
        killed = time.monotonic()
        b.popen.kill()

        async def a_leads() -> bool:
            return await leader_of(http, a)

        out["leader"] = await until("replica-a to lead", a_leads) - killed
        return out
    finally:
        drill.stop_all()
        await drill.drop_db()
        await runner.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def line(name: str, values: list[float]) -> str:
    median, worst = statistics.median(values), max(values)
    verdict = "met" if worst <= TARGET_S else "missed"
    return (f"  {name:<15} median {median:6.3f} s   max {worst:6.3f} s   "
            f"(target {TARGET_S:.0f} s: {verdict} at max; n={len(values)})")


async def main(rounds: int, restart: bool) -> None:
    results: dict[str, list[float]] = {}
    async with aiohttp.ClientSession() as http:
        for i in range(rounds):
            for kind in ["survivor", "outbox"] + (["restart"] if restart else []):
                got = await one_round(kind, http)
                for k, v in got.items():
                    results.setdefault(k, []).append(v)
                print(f"round {i + 1}: " + ", ".join(f"{k} {v:.3f} s" for k, v in got.items()),
                      flush=True)
    print(f"takeover after SIGKILL mid-call, kill -> (n={rounds}):")
    for name, values in results.items():
        print(line(name, values))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--restart", action="store_true",
                        help="also time a restart of the killed replica (no survivor)")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.restart))
