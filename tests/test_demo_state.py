"""The demo's simulated targets keep their levels across a restart of `make run`, so a
restarted demo is not met with drift pages."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web

from examples import admin_sim, exchange
from tests.conftest import free_port


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_exchange_levels_survive_a_restart(tmp_path: Path) -> None:
    """A level set before a restart is read back after it, from the state file."""
    state_file = tmp_path / "demo-exchange.json"
    auth = {"Authorization": "Bearer t"}
    runner, base = await _serve(exchange.make_app("t", state_file))
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.put(f"{base}/admin/symbols/BTC-USD/mode", json={"mode": "HARD_HALT"}):
            pass
        async with http.put(f"{base}/admin/withdrawals", json={"state": "HALTED"}) as resp:
            assert resp.status == 200
    await runner.cleanup()
    runner, base = await _serve(exchange.make_app("t", state_file))
    try:
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.get(f"{base}/admin/symbols/BTC-USD/mode") as resp:
                assert (await resp.json())["mode"] == "HARD_HALT"
            async with http.get(f"{base}/admin/withdrawals") as resp:
                assert (await resp.json())["state"] == "HALTED"
    finally:
        await runner.cleanup()


async def test_packs_simulator_documents_survive_a_restart(tmp_path: Path) -> None:
    """A document the packs simulator was given is there after a restart."""
    state_file = tmp_path / "demo-packs.json"
    auth = {"Authorization": "Bearer t"}
    path = "/gateway/admin/routes/mode"
    runner, base = await _serve(admin_sim.make_app(["t"], state_file))
    async with (aiohttp.ClientSession(headers=auth) as http,
                http.put(f"{base}{path}", json={"mode": "FROZEN"}) as resp):
        assert resp.status == 200
    await runner.cleanup()
    runner, base = await _serve(admin_sim.make_app(["t"], state_file))
    try:
        async with (aiohttp.ClientSession(headers=auth) as http,
                    http.get(f"{base}{path}") as resp):
            assert await resp.json() == {"mode": "FROZEN"}
    finally:
        await runner.cleanup()


def test_a_damaged_state_file_starts_fresh(tmp_path: Path) -> None:
    """A half-written or foreign state file is ignored, as a fresh target would start."""
    state_file = tmp_path / "demo-exchange.json"
    state_file.write_text("{not json")
    app = exchange.make_app("t", state_file)
    assert app[exchange.STATE].symbols == {}
    state_file.write_text('{"symbols": {"BTC-USD": "<script>"}, "global_mode": 7}')
    app = exchange.make_app("t", state_file)
    assert app[exchange.STATE].symbols == {}
    assert app[exchange.STATE].global_mode == "NORMAL"
