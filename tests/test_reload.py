"""Hot reload that cannot break containment, and signed rule bundles in strict mode."""

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

from responder.cli import main
from responder.daemon import Daemon
from tests.conftest import (
    ADMIN_TOKEN,
    OPERATOR_TOKEN,
    ROOT,
    WEBHOOK_TOKEN,
    DaemonFactory,
    Exchange,
    Proc,
    fixture_bytes,
    idle,
    post_alerts,
    spawn_daemon,
    url,
    wait_for,
)

BROKEN = "rules:\n  - id: broken\n    severity: sev1\n    match: ['alertname=~\"(\"']\n"


async def reload(http: aiohttp.ClientSession, daemon: Daemon,
                 token: str = ADMIN_TOKEN) -> tuple[int, Any]:
    async with http.post(url(daemon, "/-/reload"),
                         headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


async def hashes(dsn: str, kind: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT body FROM action_log WHERE kind = $1 ORDER BY seq", kind)
    finally:
        await conn.close()
    return [json.loads(r["body"])["rules_hash"] for r in rows]


async def test_bad_reload_keeps_the_last_good_table(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    rules_dir: Path, database: str,
) -> None:
    """An invalid table is refused with file:line problems and the old one still contains."""
    daemon = await make_daemon()
    good_hash = daemon.state.rules.bundle_hash if daemon.state else ""
    assert (await reload(http, daemon, OPERATOR_TOKEN))[0] == 403
    (rules_dir / "broken.yaml").write_text(BROKEN)
    status, body = await reload(http, daemon)
    assert (status, body["error"], body["kept"]) == (400, "invalid_rules", good_hash)
    assert any(p.startswith(f"{rules_dir / 'broken.yaml'}:4: invalid regex")
               for p in body["problems"])
    assert daemon.metrics.rules_reload_ok._value.get() == 0
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    assert exchange.state.symbols == {"BTC-USD": "CANCEL_ONLY"}
    assert await hashes(database, "rules_reload_refused") == [good_hash]


async def test_good_reload_takes_effect_with_its_hash(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    rules_dir: Path, database: str,
) -> None:
    """A valid new table is used from that moment, and records carry its hash."""
    daemon = await make_daemon()
    spot = rules_dir / "spot-exchange.yaml"
    spot.write_text(spot.read_text().replace(
        "    description: Ledger invariant violated; halt withdrawals and set the symbol to"
        " CANCEL_ONLY.\n",
        "    description: Ledger invariant violated; halt withdrawals and set the symbol to"
        " CANCEL_ONLY.\n    mode: dry_run\n"))
    status, body = await reload(http, daemon)
    assert status == 200
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    assert exchange.state.calls == []
    assert await hashes(database, "would_act") == [body["rules_hash"]] * 2


async def test_sighup_reloads_and_survives_a_bad_edit(
    tmp_path: Path, database: str, rules_dir: Path, procs: list[Proc],
    http: aiohttp.ClientSession, exchange: Exchange,
) -> None:
    """SIGHUP with a broken file logs the refusal; the running table keeps containing."""
    env = {"RESPONDER_DATABASE_URL": database, "RESPONDER_RULES_DIR": str(rules_dir),
           "RESPONDER_WEBHOOK_TOKENS": WEBHOOK_TOKEN}
    proc = await asyncio.to_thread(spawn_daemon, tmp_path, env)
    procs.append(proc)
    (rules_dir / "broken.yaml").write_text(BROKEN)
    proc.popen.send_signal(signal.SIGHUP)
    await wait_for(lambda: "rule reload refused" in proc.log(), what="the refusal logged")
    async with http.post(f"http://127.0.0.1:{proc.port}/webhooks/alertmanager",
                         data=fixture_bytes("firing-single.json"),
                         headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}) as resp:
        assert resp.status == 200
    await wait_for(lambda: exchange.state.symbols.get("BTC-USD") == "CANCEL_ONLY",
                   what="containment by the last good table")
    proc.popen.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.popen.wait, 30) == 0


def _sign(rules_dir: Path, tmp_path: Path) -> Path:
    assert main(["rules", "keygen", str(tmp_path / "signer")]) == 0
    assert main(["rules", "sign", str(rules_dir), "--key", str(tmp_path / "signer.key")]) == 0
    return tmp_path / "signer.pub"


async def test_strict_mode_refuses_a_tampered_bundle(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession,
    rules_dir: Path, tmp_path: Path,
) -> None:
    """In strict mode a signed table loads; one changed byte is refused at reload."""
    public = _sign(rules_dir, tmp_path)
    daemon = await make_daemon(rules_strict=True, rules_public_keys=[public])
    targets = rules_dir / "targets.yaml"
    targets.write_bytes(targets.read_bytes().replace(b"timeout_s: 2", b"timeout_s: 3"))
    status, body = await reload(http, daemon)
    assert status == 400
    assert "signature does not verify" in body["problems"][0]
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    assert exchange.state.withdrawals == "HALTED"


def test_strict_mode_refuses_to_start_on_a_tampered_bundle(rules_dir: Path,
                                                          tmp_path: Path) -> None:
    """A tampered signed table stops the daemon at start with a clear message."""
    public = _sign(rules_dir, tmp_path)
    spot = rules_dir / "spot-exchange.yaml"
    spot.write_bytes(spot.read_bytes() + b" ")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    env.update(RESPONDER_RULES_DIR=str(rules_dir), RESPONDER_RULES_STRICT="true",
               RESPONDER_RULES_PUBLIC_KEYS=str(public), RESPONDER_EXCHANGE_TOKEN="x",
               RESPONDER_DATABASE_URL="postgresql://nowhere.invalid/x")
    result = subprocess.run([sys.executable, "-m", "responder", "run"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "signature does not verify" in result.stderr


@pytest.mark.parametrize("setting", [{"RESPONDER_RULES_STRICT": "true"}])
def test_strict_mode_needs_keys(setting: dict[str, str]) -> None:
    """Strict mode without public keys is a configuration error naming the setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    result = subprocess.run([sys.executable, "-m", "responder", "run"], env={**env, **setting},
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "RESPONDER_RULES_STRICT" in result.stderr
