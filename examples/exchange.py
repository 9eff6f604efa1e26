"""A small simulated spot-exchange admin API: the demo target and the tests' target.

It keeps symbol modes, a global mode and the withdrawals state in memory, honours
``Idempotency-Key`` (a repeated key replays the first answer and changes nothing), and
exposes ``/_sim/*`` endpoints so tests can read the calls it saw and inject faults.

Run: ``python -m examples.exchange --listen 127.0.0.1:9096 --token TOKEN``
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from examples import exchange_forensics as forensics
from examples import sim_persist

web_handler = Callable[[web.Request], Awaitable[web.Response]]

SYMBOL_MODES = ("NORMAL", "CANCEL_ONLY", "SOFT_HALT", "HARD_HALT")
WITHDRAWAL_STATES = ("OPEN", "HALTED")
ORDER_INTAKE_STATES = ("OPEN", "THROTTLED", "CLOSED")  # new orders: all, rate-limited, none
CONSUMER_STATES = ("RUNNING", "PAUSED")
GRANT_STATES = ("ACTIVE", "REVOKED")


@dataclass
class Call:
    method: str
    path: str
    body: Any
    idempotency_key: str | None
    applied: bool
    status: int
    at: float


@dataclass
class Faults:
    """Injected behaviour: fail the next N calls with a status, or delay every call."""

    fail_next: int = 0
    fail_status: int = 503
    delay_s: float = 0.0
    read_lies: bool = False  # reads report the lowest level, whatever was applied


@dataclass
class ExchangeState:
    token: str
    symbols: dict[str, str] = field(default_factory=dict)
    global_mode: str = "NORMAL"
    withdrawals: str = "OPEN"
    order_intake: str = "OPEN"
    levels: dict[str, str] = field(default_factory=dict)
    """Levels of the other controls (per-symbol intake, analytics consumers, JIT grants),
    by path."""
    calls: list[Call] = field(default_factory=list)
    reads: Counter[str] = field(default_factory=Counter)
    """GETs of the forensic status documents, by path."""
    replies: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    inflight: dict[str, int] = field(default_factory=dict)
    max_inflight: dict[str, int] = field(default_factory=dict)
    total_inflight: int = 0
    max_total_inflight: int = 0
    state_file: Path | None = None  # levels kept across restarts (the demo), else memory

    def persisted(self) -> dict[str, Any]:
        return {"symbols": self.symbols, "global_mode": self.global_mode,
                "withdrawals": self.withdrawals, "order_intake": self.order_intake,
                "levels": self.levels}

    def restore(self) -> None:
        found = sim_persist.load(self.state_file)
        symbols = found.get("symbols")
        self.symbols = {str(k): str(v) for k, v in symbols.items()
                        if v in SYMBOL_MODES} if isinstance(symbols, dict) else {}
        for name, allowed in (("global_mode", SYMBOL_MODES),
                              ("withdrawals", WITHDRAWAL_STATES),
                              ("order_intake", ORDER_INTAKE_STATES)):
            if found.get(name) in allowed:
                setattr(self, name, found[name])
        levels = found.get("levels")
        self.levels = {str(k): str(v) for k, v in levels.items()} \
            if isinstance(levels, dict) else {}

    def forget(self) -> None:
        self.symbols.clear()
        self.global_mode = "NORMAL"
        self.withdrawals = "OPEN"
        self.order_intake = "OPEN"
        self.levels.clear()
        sim_persist.save(self.state_file, self.persisted())


STATE = web.AppKey("state", ExchangeState)


def _authorised(request: web.Request, state: ExchangeState) -> bool:
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {state.token}".encode())


async def _apply(request: web.Request, field_name: str, allowed: tuple[str, ...],
                 setter: str) -> web.Response:
    state = request.app[STATE]
    if not _authorised(request, state):
        return web.json_response({"error": "unauthorized"}, status=401)
    path = request.path
    state.inflight[path] = state.inflight.get(path, 0) + 1
    state.max_inflight[path] = max(state.max_inflight.get(path, 0), state.inflight[path])
    # Concurrency high-water marks let tests see serialisation without timing anything.
    state.total_inflight += 1
    state.max_total_inflight = max(state.max_total_inflight, state.total_inflight)
    try:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        # The delay models slow processing after the request arrived: a caller that dies
        # meanwhile still gets its change applied, as on a real server.
        if state.faults.delay_s:
            await asyncio.sleep(state.faults.delay_s)
        return _apply_now(request, state, body, field_name, allowed, setter)
    finally:
        state.inflight[path] -= 1
        state.total_inflight -= 1


def _apply_now(request: web.Request, state: ExchangeState, body: Any, field_name: str,
               allowed: tuple[str, ...], setter: str) -> web.Response:
    key = request.headers.get("Idempotency-Key")
    if key is not None and key in state.replies:
        status, reply = state.replies[key]
        state.calls.append(Call(request.method, request.path, body, key, False, status,
                                time.time()))
        return web.json_response({**reply, "replayed": True}, status=status)
    if state.faults.fail_next > 0:
        state.faults.fail_next -= 1
        status = state.faults.fail_status
        state.calls.append(Call(request.method, request.path, body, key, False, status,
                                time.time()))
        return web.json_response({"error": "injected fault"}, status=status)
    value = body.get(field_name) if isinstance(body, dict) else None
    if value not in allowed:
        state.calls.append(Call(request.method, request.path, body, key, False, 400, time.time()))
        return web.json_response({"error": f"{field_name} must be one of {allowed}"}, status=400)
    if setter == "symbol":
        state.symbols[request.match_info["symbol"]] = value
    elif setter == "global":
        state.global_mode = value
    elif setter == "intake":
        state.order_intake = value
    elif setter == "path":
        state.levels[request.path] = value
    else:
        state.withdrawals = value
    sim_persist.save(state.state_file, state.persisted())
    reply = {field_name: value}
    if key is not None:
        state.replies[key] = (200, reply)
    state.calls.append(Call(request.method, request.path, body, key, True, 200, time.time()))
    return web.json_response(reply)


async def put_symbol(request: web.Request) -> web.Response:
    return await _apply(request, "mode", SYMBOL_MODES, "symbol")


async def put_global(request: web.Request) -> web.Response:
    return await _apply(request, "mode", SYMBOL_MODES, "global")


async def put_withdrawals(request: web.Request) -> web.Response:
    return await _apply(request, "state", WITHDRAWAL_STATES, "withdrawals")


async def get_symbol(request: web.Request) -> web.Response:
    state = request.app[STATE]
    mode = state.symbols.get(request.match_info["symbol"], "NORMAL")
    return web.json_response({"mode": "NORMAL" if state.faults.read_lies else mode})


async def get_global(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"mode": "NORMAL" if state.faults.read_lies else state.global_mode})


async def get_withdrawals(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"state": "OPEN" if state.faults.read_lies else state.withdrawals})


async def put_order_intake(request: web.Request) -> web.Response:
    return await _apply(request, "state", ORDER_INTAKE_STATES, "intake")


async def get_order_intake(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"state": "OPEN" if state.faults.read_lies else state.order_intake})


def _by_path(field_name: str, allowed: tuple[str, ...]) -> tuple[web_handler, web_handler]:
    """A PUT and a GET for a control whose level is kept by path (lowest level unset)."""

    async def put(request: web.Request) -> web.Response:
        return await _apply(request, field_name, allowed, "path")

    async def get(request: web.Request) -> web.Response:
        state = request.app[STATE]
        if not _authorised(request, state):
            return web.json_response({"error": "unauthorized"}, status=401)
        level = state.levels.get(request.path, allowed[0])
        return web.json_response({field_name: allowed[0] if state.faults.read_lies else level})

    return put, get


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text: the levels as ranks, and how many admin calls were applied."""
    state = request.app[STATE]
    lines = [
        "# TYPE exchange_withdrawals_halted gauge",
        f"exchange_withdrawals_halted {int(state.withdrawals == 'HALTED')}",
        "# TYPE exchange_global_mode_rank gauge",
        f"exchange_global_mode_rank {SYMBOL_MODES.index(state.global_mode)}",
        "# TYPE exchange_symbol_mode_rank gauge",
        *(f'exchange_symbol_mode_rank{{symbol="{s}"}} {SYMBOL_MODES.index(m)}'
          for s, m in sorted(state.symbols.items())),
        "# TYPE exchange_admin_calls_applied_total counter",
        f"exchange_admin_calls_applied_total {sum(c.applied for c in state.calls)}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def sim_forget(request: web.Request) -> web.Response:
    """Forget every level, as a restarted exchange with no persistence would."""
    request.app[STATE].forget()
    return web.json_response({"ok": True})


async def sim_calls(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({
        "calls": [c.__dict__ for c in state.calls],
        "symbols": state.symbols,
        "global_mode": state.global_mode,
        "withdrawals": state.withdrawals,
        "order_intake": state.order_intake,
        "levels": state.levels,
    })


async def sim_faults(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[STATE].faults = Faults(**body)
    return web.json_response({"ok": True})


def make_app(token: str, state_file: Path | None = None) -> web.Application:
    """The exchange admin API as an aiohttp application."""
    app = web.Application()
    app[STATE] = ExchangeState(token=token, state_file=state_file)
    app[STATE].restore()
    app.router.add_put("/admin/symbols/{symbol}/mode", put_symbol)
    app.router.add_get("/admin/symbols/{symbol}/mode", get_symbol)
    app.router.add_put("/admin/global/mode", put_global)
    app.router.add_get("/admin/global/mode", get_global)
    app.router.add_put("/admin/withdrawals", put_withdrawals)
    app.router.add_get("/admin/withdrawals", get_withdrawals)
    app.router.add_put("/admin/orders/intake", put_order_intake)
    app.router.add_get("/admin/orders/intake", get_order_intake)
    for path, allowed in (("/admin/symbols/{symbol}/orders/intake", ORDER_INTAKE_STATES),
                          ("/admin/consumers/analytics", CONSUMER_STATES),
                          ("/admin/access/jit-grants/{actor}", GRANT_STATES)):
        put, get = _by_path("state", allowed)
        app.router.add_put(path, put)
        app.router.add_get(path, get)
    forensics.add_routes(app, lambda request: _authorised(request, request.app[STATE]),
                         lambda request: request.app[STATE].reads.update([request.path]))
    app.router.add_get("/_sim/state", sim_calls)
    app.router.add_post("/_sim/faults", sim_faults)
    app.router.add_post("/_sim/forget", sim_forget)
    app.router.add_get("/metrics", metrics)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:9096")
    parser.add_argument("--token", required=True)
    parser.add_argument("--state-file", type=Path,
                        help="keep the levels in this JSON file across restarts")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    web.run_app(make_app(args.token, args.state_file), host=host, port=int(port), print=None)


if __name__ == "__main__":
    main()
