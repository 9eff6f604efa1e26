"""A daemon on its own event loop in a thread, for clients that block (schemathesis)."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from responder.daemon import Daemon
from tests.conftest import (
    ADMIN_DSN,
    EXCHANGE_TOKEN,
    ROOT,
    WEBHOOK_TOKEN,
    Exchange,
    dsn_for,
    fixture_bytes,
    settings_for,
    start_exchange,
)

T = TypeVar("T")


class LiveDaemon:
    """A started daemon, a simulated exchange and a fresh database, served from a thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, daemon: Daemon, exchange: Exchange,
                 dsn: str) -> None:
        self.loop = loop
        self.daemon = daemon
        self.exchange = exchange
        self.dsn = dsn
        self.url = f"http://127.0.0.1:{daemon.port}"

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        """Run a coroutine on the daemon's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)


async def _create_database() -> str:
    name = f"responder_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def _drop_database(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _contain_one(daemon: Daemon) -> None:
    """One firing alert, so there is an incident, a held key and a bundle to read."""
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{daemon.port}/webhooks/alertmanager",
            data=fixture_bytes("firing-single.json"),
            headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}",
                     "Content-Type": "application/json"}) as resp:
        assert resp.status == 200, await resp.text()


@contextmanager
def live_daemon(tmp_path: Path, **overrides: Any) -> Iterator[LiveDaemon]:
    """Start everything on a new loop in a thread; stop and drop it all afterwards."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="live-daemon", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    saved = {k: os.environ.get(k) for k in ("RESPONDER_EXCHANGE_URL", "RESPONDER_EXCHANGE_TOKEN")}
    name = run(_create_database())
    runner: web.AppRunner | None = None
    daemon: Daemon | None = None
    try:
        exchange, runner = run(start_exchange())
        rules = tmp_path / "rules"
        shutil.copytree(ROOT / "rules", rules)
        os.environ["RESPONDER_EXCHANGE_URL"] = exchange.url
        os.environ["RESPONDER_EXCHANGE_TOKEN"] = EXCHANGE_TOKEN
        overrides.setdefault("data_dir", tmp_path / "data")

        async def start() -> Daemon:
            started = Daemon(settings_for(dsn_for(name), rules, **overrides),
                             registry=CollectorRegistry())
            await started.start()
            return started

        daemon = run(start())
        run(_contain_one(daemon))
        yield LiveDaemon(loop, daemon, exchange, dsn_for(name))
    finally:
        if daemon is not None:
            run(daemon.shutdown())
        if runner is not None:
            run(runner.cleanup())
        run(_drop_database(name))
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
