"""A real daemon, its own database and the simulated exchange, for tests that drive them
from synchronous code (hypothesis state machines and fuzzers) through a loop in a thread."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine

from examples.exchange import STATE as EXCHANGE_STATE
from examples.exchange import ExchangeState, make_app
from responder.daemon import Daemon
from tests.conftest import ADMIN_DSN, EXCHANGE_TOKEN, ROOT, dsn_for, free_port, settings_for

T = TypeVar("T")


class Loop:
    """An event loop in a thread, so synchronous hypothesis rules can drive async code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class LiveStack:
    database: str
    exchange: ExchangeState
    runner: web.AppRunner
    daemon: Daemon
    http: aiohttp.ClientSession

    async def stop(self) -> None:
        await self.http.close()
        await self.daemon.shutdown()
        await self.runner.cleanup()
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            await admin.close()


async def start_stack(database: str, rules_dir: Path, exchange_port: int,
                      **overrides: Any) -> LiveStack:
    """Create ``database``, serve the exchange on ``exchange_port`` and start a daemon."""
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    app = make_app(EXCHANGE_TOKEN)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", exchange_port).start()
    daemon = Daemon(settings_for(dsn_for(database), rules_dir, **overrides))
    await daemon.start()
    return LiveStack(database, app[EXCHANGE_STATE], runner, daemon, aiohttp.ClientSession())


def run_machine(machine: type[RuleBasedStateMachine], tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch, *, max_examples: int, steps: int,
                rules_dir: Path | None = None) -> None:
    """Run a stack state machine on the shipped rules (or ``rules_dir``), in a loop of its
    own, against an exchange on a free port."""
    loop = Loop()
    if rules_dir is None:
        rules_dir = tmp_path / "rules"
        shutil.copytree(ROOT / "rules", rules_dir)
    port = free_port()
    monkeypatch.setenv("RESPONDER_EXCHANGE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("RESPONDER_EXCHANGE_TOKEN", EXCHANGE_TOKEN)
    told: Any = machine
    told.loop, told.rules_dir, told.exchange_port = loop, rules_dir, port
    try:
        configured = settings(max_examples=max_examples, stateful_step_count=steps,
                              deadline=None, suppress_health_check=list(HealthCheck))(machine)
        configured.TestCase().runTest()
    finally:
        loop.close()
