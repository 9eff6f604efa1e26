"""The daemon as a real process: crash safety, signals, secrets in logs, settings, defaults."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from examples.exchange import Faults
from responder.daemon import Daemon
from tests.conftest import (
    EXCHANGE_TOKEN,
    ROOT,
    WEBHOOK_TOKEN,
    Exchange,
    PrivatePostgres,
    Proc,
    fixture_bytes,
    free_port,
    settings_for,
    spawn_daemon,
    start_exchange,
    wait_for,
)


def daemon_env(database: str, rules_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "RESPONDER_DATABASE_URL": database,
        "RESPONDER_RULES_DIR": str(rules_dir),
        "RESPONDER_WEBHOOK_TOKENS": WEBHOOK_TOKEN,
        "RESPONDER_SHUTDOWN_DEADLINE_S": "10",
        # A killed daemon's step leases must run out before its restart takes them over.
        "RESPONDER_STEP_LEASE_S": "1",
        "RESPONDER_SWEEP_INTERVAL_S": "0.5",
        **extra,
    }


async def spawn(tmp_path: Path, procs: list[Proc], env: dict[str, str],
                port: int | None = None) -> Proc:
    proc = await asyncio.to_thread(spawn_daemon, tmp_path, env, port)
    procs.append(proc)
    return proc


async def post(http: aiohttp.ClientSession, port: int, body: bytes,
               token: str = WEBHOOK_TOKEN) -> int:
    async with http.post(f"http://127.0.0.1:{port}/webhooks/alertmanager", data=body,
                         headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


async def fetchval(dsn: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def kill(proc: Proc) -> None:
    proc.popen.kill()
    await asyncio.to_thread(proc.popen.wait, 10)


async def test_crash_before_the_call_completes_exactly_once(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed after the 2xx and before any call landed, the restarted daemon calls once."""
    port = free_port()
    monkeypatch.setenv("RESPONDER_EXCHANGE_URL", f"http://127.0.0.1:{port}")  # nothing there yet
    env = daemon_env(database, rules_dir, RESPONDER_STEP_DEADLINE_S="120")
    proc = await spawn(tmp_path, procs, env)
    assert await post(http, proc.port, fixture_bytes("firing-single.json")) == 200
    await wait_for(lambda: fetchval(database, "SELECT count(*) = 2 FROM steps"),
                   what="intents recorded")
    await kill(proc)
    exchange, runner = await start_exchange(port)
    try:
        proc = await spawn(tmp_path, procs, env)
        await wait_for(lambda: exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY"
                       and exchange.state.withdrawals == "HALTED", what="containment")
        await wait_for(lambda: fetchval(database, "SELECT count(*) = 0 FROM steps"
                                                  " WHERE status = 'pending'"),
                       what="outcomes recorded")
        assert sorted(c.path for c in exchange.state.calls) == [
            "/admin/symbols/BTC-USD/mode", "/admin/withdrawals"]
        assert await fetchval(database, "SELECT count(*) FROM action_log"
                                        " WHERE kind = 'intent'") == 2
        assert await fetchval(database, "SELECT count(*) FROM action_log"
                                        " WHERE kind = 'outcome'") == 2
    finally:
        await runner.cleanup()


async def _kill_mid_call_and_restart(tmp_path: Path, procs: list[Proc],
                                     http: aiohttp.ClientSession, exchange: Exchange,
                                     env: dict[str, str]) -> None:
    """Start a daemon, kill it while its first call is in flight, start it again."""
    exchange.state.faults = Faults(delay_s=1.5)
    proc = await spawn(tmp_path, procs, env)
    assert await post(http, proc.port, fixture_bytes("firing-single.json")) == 200
    await wait_for(lambda: exchange.state.total_inflight > 0, what="a call in flight")
    await kill(proc)
    await wait_for(lambda: exchange.state.total_inflight == 0, what="the orphaned call")
    exchange.state.faults = Faults()
    await spawn(tmp_path, procs, env)


async def test_crash_during_the_call_applies_once(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """Killed while the call is in flight, the retry reuses the key and the target applies once."""
    env = daemon_env(database, rules_dir, RESPONDER_STEP_DEADLINE_S="60")
    await _kill_mid_call_and_restart(tmp_path, procs, http, exchange, env)
    await wait_for(lambda: fetchval(database, "SELECT count(*) = 0 FROM steps"
                                              " WHERE status = 'pending'"),
                   what="every step closed")
    by_path: dict[str, list[Any]] = {}
    for call in exchange.state.calls:
        by_path.setdefault(call.path, []).append(call)
    assert set(by_path) == {"/admin/withdrawals", "/admin/symbols/BTC-USD/mode"}
    for calls in by_path.values():
        assert sum(c.applied for c in calls) == 1
        assert len({c.idempotency_key for c in calls}) == 1
    assert len(by_path["/admin/withdrawals"]) == 2  # the orphaned call and its replay


async def test_a_restart_takes_over_its_predecessors_claims_without_waiting(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """Killed mid-call with a long lease, the daemon restarts from the same data directory,
    finds its predecessor gone (its name's lock is free) and takes its claimed step over at
    once, recorded as a takeover, instead of waiting out a minute's lease."""
    env = daemon_env(database, rules_dir, RESPONDER_STEP_DEADLINE_S="60",
                     RESPONDER_STEP_LEASE_S="60")
    await _kill_mid_call_and_restart(tmp_path, procs, http, exchange, env)
    await wait_for(lambda: fetchval(database, "SELECT count(*) = 0 FROM steps"
                                              " WHERE status = 'pending'"),
                   timeout_s=15, what="every step closed well inside the 60 s lease")
    assert await fetchval(database, "SELECT count(*) FROM action_log"
                                    " WHERE kind = 'step_taken_over'") >= 1
    for path in ("/admin/withdrawals", "/admin/symbols/BTC-USD/mode"):
        assert sum(c.applied for c in exchange.state.calls if c.path == path) == 1


async def test_restart_never_runs_a_lower_step_after_a_higher_one(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a crash, a pending CANCEL_ONLY never runs after a HARD_HALT on the same key. If
    the HARD_HALT had been claimed (so may have reached the target) the CANCEL_ONLY is
    superseded; if the CANCEL_ONLY held the key first, it runs first and HARD_HALT follows."""
    port = free_port()
    monkeypatch.setenv("RESPONDER_EXCHANGE_URL", f"http://127.0.0.1:{port}")  # down for now
    env = daemon_env(database, rules_dir, RESPONDER_STEP_DEADLINE_S="120")
    proc = await spawn(tmp_path, procs, env)
    split = json.loads(fixture_bytes("firing-single.json"))
    split["alerts"][0]["labels"]["alertname"] = "SplitBrainSuspected"
    split["alerts"][0]["fingerprint"] = "split-btc"
    assert await post(http, proc.port, fixture_bytes("firing-single.json")) == 200
    assert await post(http, proc.port, json.dumps(split).encode()) == 200
    await wait_for(lambda: fetchval(database, "SELECT count(*) = 3 FROM steps"),
                   what="three steps pending")
    await kill(proc)
    exchange, runner = await start_exchange(port)
    try:
        await spawn(tmp_path, procs, env)
        await wait_for(lambda: fetchval(database, "SELECT count(*) = 0 FROM steps"
                                                  " WHERE status = 'pending'"),
                       what="every step closed")
        modes = [c.body["mode"] for c in exchange.state.calls
                 if c.path == "/admin/symbols/BTC-USD/mode"]
        assert modes in (["HARD_HALT"], ["CANCEL_ONLY", "HARD_HALT"]), modes
        if modes == ["HARD_HALT"]:
            # Closed unapplied: superseded by the claimed HARD_HALT step, or (steps now run
            # by position, so the ledger incident calls withdrawals first) held already.
            body = await fetchval(database, "SELECT body FROM action_log WHERE kind ="
                                            " 'outcome' AND body LIKE '%CANCEL_ONLY%'")
            detail = json.loads(body)["detail"]
            assert detail["status"] == "already_contained"
            assert "superseded_by_step" in detail or detail["held"] == "HARD_HALT"
    finally:
        await runner.cleanup()


async def test_sigterm_drains_then_exits_zero(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """SIGTERM: webhooks answer 503, the in-flight step finishes and is recorded, exit 0."""
    exchange.state.faults = Faults(delay_s=1.0)
    proc = await spawn(tmp_path, procs, daemon_env(database, rules_dir))
    assert await post(http, proc.port, fixture_bytes("firing-single.json")) == 200
    await wait_for(lambda: exchange.state.total_inflight > 0, what="a call in flight")
    proc.popen.send_signal(signal.SIGTERM)
    await wait_for(lambda: _status_is(http, proc.port, 503), what="intake answering 503")
    code = await asyncio.to_thread(proc.popen.wait, 30)
    assert code == 0, proc.log()
    assert await fetchval(database, "SELECT count(*) FROM steps WHERE status = 'done'") >= 1
    assert exchange.state.withdrawals == "HALTED"


async def _status_is(http: aiohttp.ClientSession, port: int, status: int) -> bool:
    try:
        return await post(http, port, fixture_bytes("resolved-single.json")) == status
    except aiohttp.ClientError:
        return False


async def test_second_signal_cuts_the_drain_short(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """A second SIGINT during a long drain cancels the call in flight and still leaves
    through the ordered shutdown; the step stays pending for the next start."""
    exchange.state.faults = Faults(delay_s=20)
    env = daemon_env(database, rules_dir, RESPONDER_SHUTDOWN_DEADLINE_S="60",
                     RESPONDER_STEP_DEADLINE_S="60")
    proc = await spawn(tmp_path, procs, env)
    assert await post(http, proc.port, fixture_bytes("firing-single.json")) == 200
    await wait_for(lambda: exchange.state.total_inflight > 0, what="a call in flight")
    proc.popen.send_signal(signal.SIGINT)
    await wait_for(lambda: "stopping" in proc.log(), what="the first signal taken")
    proc.popen.send_signal(signal.SIGINT)
    code = await asyncio.to_thread(proc.popen.wait, 15)
    assert code == 0, proc.log()
    assert "second signal" in proc.log()
    assert proc.log().rindex('"stopped"') > proc.log().index("second signal")
    assert await fetchval(database, "SELECT count(*) FROM steps WHERE status = 'pending'") == 2


async def test_secrets_never_reach_the_logs(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Canary secrets appear in no log line, record, bundle or sink payload; logs are JSON."""
    canary_webhook = "canary-webhook-8c1f2e9d"
    canary_admin = "canary-admin-5b7a3c1e"
    canary_sink = "canary-sink-hmac-2f4e6a8c"
    sink_dir = tmp_path / "sink"
    exchange.state.token = canary_admin
    monkeypatch.setenv("RESPONDER_EXCHANGE_TOKEN", canary_admin)
    exchange.state.faults = Faults(fail_next=1, fail_status=500)
    env = daemon_env(database, rules_dir, RESPONDER_WEBHOOK_TOKENS=canary_webhook,
                     RESPONDER_VIEWER_TOKENS="canary-viewer-0d9e8f7a",
                     RESPONDER_LOG_LEVEL="debug",
                     RESPONDER_SINKS=json.dumps([
                         {"name": "files", "kind": "file", "dir": str(sink_dir),
                          "hmac_secret": canary_sink, "pages": True}]))
    proc = await spawn(tmp_path, procs, env)
    assert await post(http, proc.port, fixture_bytes("firing-single.json"),
                      token=canary_webhook) == 200
    assert await post(http, proc.port, b"{}", token=canary_webhook + "x") == 401
    assert await post(http, proc.port, b"{not json", token=canary_webhook) == 400
    await wait_for(lambda: exchange.state.withdrawals == "HALTED", what="containment")
    await wait_for(lambda: fetchval(database, "SELECT count(*) = 0 FROM steps"
                                              " WHERE status = 'pending'"), what="outcomes")
    await wait_for(lambda: fetchval(database, "SELECT count(*) > 0 AND bool_and(status ="
                                              " 'delivered') FROM outbox"), what="deliveries")
    proc.popen.send_signal(signal.SIGTERM)
    await asyncio.to_thread(proc.popen.wait, 30)
    text = proc.log()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) >= 4
    for line in lines:
        json.loads(line)
    canaries = (canary_webhook, canary_admin, "canary-viewer-0d9e8f7a", canary_sink)
    records = await fetchval(database, "SELECT string_agg(body, '') FROM action_log")
    bundles = await fetchval(database, "SELECT string_agg(body, '') FROM evidence")
    payloads = "".join(p.read_text() for p in sink_dir.glob("*.json"))
    assert payloads  # bundles and a page were delivered
    for canary in canaries:
        for where, content in (("logs", text), ("action log", records),
                               ("bundles", bundles), ("sink payloads", payloads)):
            assert canary not in content, f"{canary} leaked into the {where}"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    return subprocess.run([sys.executable, "-m", "responder", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


@pytest.mark.parametrize(("env", "setting"), [
    ({"RESPONDER_LISTEN": "nowhere"}, "RESPONDER_LISTEN"),
    ({"RESPONDER_MAX_BODY_BYTES": "-5"}, "RESPONDER_MAX_BODY_BYTES"),
    ({"RESPONDER_ENV": "staging"}, "RESPONDER_ENV"),
    ({"RESPONDER_ENV": "production", "RESPONDER_WEBHOOK_TOKENS": "demo-webhook-token"},
     "RESPONDER_WEBHOOK_TOKENS"),
    ({"RESPONDER_WEBHOOK_TOKENS_FILE": "/nonexistent/tokens"}, "RESPONDER_WEBHOOK_TOKENS_FILE"),
    ({"RESPONDER_ENV": "production", "RESPONDER_PRINCIPALS": json.dumps([{
        "name": "ops", "role": "admin",
        "token_sha256": "91c16f0d6cc1bec3c3603972182a07c66ff4fa71618a975e963d6dbe42b6dd37"}])},
     "RESPONDER_PRINCIPALS"),
    ({"RESPONDER_PRINCIPALS": '[{"name": "ops", "role": "root", "token_sha256": "00"}]'},
     "RESPONDER_PRINCIPALS"),
])
def test_invalid_setting_stops_with_one_line(env: dict[str, str], setting: str) -> None:
    """An invalid setting stops the daemon with one line naming it (demo tokens in production)."""
    result = _run(["run"], env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and setting in lines[0], result.stderr


def test_invalid_rules_stop_the_daemon(tmp_path: Path) -> None:
    """The daemon refuses to start on invalid rules, naming file and line."""
    (tmp_path / "bad.yaml").write_text("rules:\n  - id: x\n    severity: sev1\n    match: []\n")
    result = _run(["run"], {"RESPONDER_RULES_DIR": str(tmp_path),
                            "RESPONDER_DATABASE_URL": "postgresql://nowhere.invalid/x"})
    assert result.returncode == 2
    assert f"{tmp_path / 'bad.yaml'}:4" in result.stderr


def test_tokens_from_a_file(tmp_path: Path) -> None:
    """Tokens can come from a file, one per line, merged with those from the environment."""
    token_file = tmp_path / "tokens"
    token_file.write_text("# rotated monthly\nfile-token-1\n\nfile-token-2\n")
    settings = settings_for("postgresql://x/y", tmp_path, webhook_tokens=["env-token"],
                            webhook_tokens_file=token_file)
    assert [t.get_secret_value() for t in settings.access.webhook_tokens] == [
        "env-token", "file-token-1", "file-token-2"]


async def test_store_down_answers_503_and_recovers(
    private_postgres: PrivatePostgres, rules_dir: Path, exchange: Exchange,
    http: aiohttp.ClientSession,
) -> None:
    """With the store down, webhooks answer 503 (retried) and /readyz says so; then recover."""
    daemon = Daemon(settings_for(private_postgres.dsn, rules_dir), registry=CollectorRegistry())
    await daemon.start()
    assert daemon.port is not None
    port = daemon.port
    try:
        base = f"http://127.0.0.1:{port}"
        assert await post(http, port, fixture_bytes("resolved-single.json")) == 200
        await asyncio.to_thread(private_postgres.stop)
        assert await post(http, port, fixture_bytes("firing-single.json")) == 503
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["store"] is False
        assert exchange.state.calls == []
        await asyncio.to_thread(private_postgres.start)
        await wait_for(lambda: _status_is(http, port, 200), what="intake to recover")
        assert await post(http, port, fixture_bytes("firing-single.json")) == 200
        await wait_for(lambda: exchange.state.withdrawals == "HALTED", what="containment")
    finally:
        await daemon.shutdown()


async def test_store_outage_during_a_call_still_completes_once(
    private_postgres: PrivatePostgres, rules_dir: Path, exchange: Exchange,
    http: aiohttp.ClientSession,
) -> None:
    """The store dies while a call is in flight: once it is back the step closes, applied once."""
    exchange.state.faults = Faults(delay_s=1.0)
    daemon = Daemon(settings_for(private_postgres.dsn, rules_dir, step_deadline_s=30.0),
                    registry=CollectorRegistry())
    await daemon.start()
    assert daemon.port is not None
    try:
        assert await post(http, daemon.port, fixture_bytes("firing-single.json")) == 200
        await wait_for(lambda: exchange.state.total_inflight > 0, what="a call in flight")
        await asyncio.to_thread(private_postgres.stop)
        await wait_for(lambda: exchange.state.total_inflight == 0, timeout_s=15,
                       what="the call to finish")
        exchange.state.faults = Faults()
        await asyncio.to_thread(private_postgres.start)
        await wait_for(lambda: fetchval(private_postgres.dsn, "SELECT count(*) = 0 FROM steps"
                                                             " WHERE status = 'pending'"),
                       timeout_s=30, what="every step closed")
    finally:
        await daemon.shutdown()
    for path in ("/admin/withdrawals", "/admin/symbols/BTC-USD/mode"):
        calls = [c for c in exchange.state.calls if c.path == path]
        assert sum(c.applied for c in calls) == 1
        assert len({c.idempotency_key for c in calls}) == 1
    assert await fetchval(private_postgres.dsn, "SELECT count(*) FROM action_log"
                                                " WHERE kind = 'outcome'") == 2


async def test_embedded_store_keeps_data_across_restarts(
    tmp_path: Path, server_dir: Path, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """With no database configured the daemon runs on embedded PostgreSQL under data_dir."""
    env = {"RESPONDER_DATABASE_URL": "", "RESPONDER_DATA_DIR": str(server_dir / "data"),
           "RESPONDER_RULES_DIR": str(rules_dir), "RESPONDER_WEBHOOK_TOKENS": WEBHOOK_TOKEN,
           "XDG_RUNTIME_DIR": str(tmp_path / "xdg")}
    clean_env = {**env}
    proc = await spawn(tmp_path, procs, clean_env)
    assert await post(http, proc.port, fixture_bytes("firing-single.json")) == 200
    await wait_for(lambda: exchange.state.withdrawals == "HALTED", what="containment")
    proc.popen.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.popen.wait, 30) == 0
    proc = await spawn(tmp_path, procs, clean_env)
    assert await post(http, proc.port, fixture_bytes("firing-single.json")) == 200
    proc.popen.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.popen.wait, 30) == 0
    result = await asyncio.to_thread(_run, ["audit", "verify"], env)
    assert result.returncode == 0, result.stderr
    assert "action log OK" in result.stdout
    assert (server_dir / "data" / "pgdata" / "PG_VERSION").is_file()
    assert sum(c.applied for c in exchange.state.calls) == 2  # the repeat did not act
    assert EXCHANGE_TOKEN
