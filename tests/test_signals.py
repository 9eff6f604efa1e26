"""Signals at any moment of the daemon's life, start-up included, end in order or reload."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from responder import failpoints
from tests.conftest import (
    ROOT,
    WEBHOOK_TOKEN,
    Exchange,
    Proc,
    fixture_bytes,
    free_port,
    wait_for,
)


def held_daemon(tmp_path: Path, database: str, rules_dir: Path) -> Proc:
    """A daemon process stopped at start-up, after the store opened, before migrations."""
    port = free_port()
    log_path = tmp_path / "held.log"
    env = {**os.environ, "RESPONDER_DATA_DIR": str(tmp_path / "data"),
           "RESPONDER_DATABASE_URL": database, "RESPONDER_RULES_DIR": str(rules_dir),
           "RESPONDER_WEBHOOK_TOKENS": WEBHOOK_TOKEN, "RESPONDER_LISTEN": f"127.0.0.1:{port}",
           "RESPONDER_FAILPOINT_HOLD": failpoints.START_BEFORE_MIGRATE}
    with log_path.open("wb") as out:
        popen = subprocess.Popen([sys.executable, "-m", "responder", "run"], env=env,
                                 stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    return Proc(popen, port, log_path)


def events(proc: Proc) -> list[dict[str, object]]:
    """The daemon's JSON log lines so far."""
    found = []
    for line in proc.log().splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                found.append(event)
    return found


async def until_held(proc: Proc) -> None:
    def held() -> bool:
        assert proc.popen.poll() is None, proc.log()
        return "failpoint: holding" in proc.log()

    await wait_for(held, timeout_s=30, what="start-up held at the failpoint")


async def test_sighup_during_start_up_reloads_once_started(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """A SIGHUP during migrations neither kills the daemon nor is lost: it reloads after."""
    proc = held_daemon(tmp_path, database, rules_dir)
    procs.append(proc)
    await until_held(proc)
    proc.popen.send_signal(signal.SIGHUP)
    proc.popen.send_signal(signal.SIGUSR1)

    def reloaded() -> bool:
        assert proc.popen.poll() is None, proc.log()
        return any(e.get("event") == "rules reloaded" and e.get("by") == "SIGHUP"
                   for e in events(proc))

    await wait_for(reloaded, timeout_s=30, what="the reload asked for during start-up")
    async with http.post(f"http://127.0.0.1:{proc.port}/webhooks/alertmanager",
                         data=fixture_bytes("firing-single.json"),
                         headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}) as resp:
        assert resp.status == 200
    await wait_for(lambda: exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY",
                   what="containment after the reload")
    proc.popen.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.popen.wait, 30) == 0


async def test_two_sigterms_during_start_up_still_stop_in_order(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
) -> None:
    """SIGTERM twice during start-up: start-up ends, then the ordered shutdown runs; exit 0."""
    proc = held_daemon(tmp_path, database, rules_dir)
    procs.append(proc)
    await until_held(proc)
    proc.popen.send_signal(signal.SIGTERM)
    await wait_for(lambda: any(e.get("event") == "stopping" for e in events(proc)),
                   what="the first signal taken")
    proc.popen.send_signal(signal.SIGTERM)
    await wait_for(lambda: "second signal" in proc.log(), what="the second signal taken")
    proc.popen.send_signal(signal.SIGUSR1)
    assert await asyncio.to_thread(proc.popen.wait, 30) == 0, proc.log()
    said = [e.get("event") for e in events(proc)]
    assert said.index("stop requested during start-up; shutting down") < said.index("stopped")
