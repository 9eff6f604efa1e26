"""A stateful property test of the release path and the modes.

Hypothesis interleaves SEV1 alerts (containment and re-containment), two-person release
requests, approvals, expiries, mode switches, break-glass and drift against a real daemon,
the real PostgreSQL and the simulated exchange. Whatever the order:

- an approval releases only what its request named: the containment it was made for,
  from the level it was made from, to the level it asked for;
- no automatic call reaches the target while automation may not act (paused, dry-run,
  break-glass), drift repair included;
- once enforce resumes, every open SEV1 incident whose alert still fires is contained.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from responder.engine.manual import expire_requests
from tests import append_lock
from tests.conftest import (
    ADMIN_TOKEN,
    OPERATOR_TOKEN,
    ROOT,
    SECOND_OPERATOR_TOKEN,
    WEBHOOK_TOKEN,
)
from tests.live_stack import Loop, run_machine, start_stack

SYMBOLS = ["BTC-USD", "BTC-USD", "ETH-USD"]  # most sequences work on one key
ALERTS = ["LedgerInvariantViolation", "SplitBrainSuspected"]
LEVELS = ("NORMAL", "CANCEL_ONLY", "SOFT_HALT", "HARD_HALT")
MANUAL = "responder-manual-"


@dataclass(frozen=True)
class Request:
    id: int
    symbol: str
    from_level: str
    to_level: str
    containment: int


class ReleasesAndModes(RuleBasedStateMachine):
    loop: Loop
    rules_dir: Path
    exchange_port = 0

    def __init__(self) -> None:
        super().__init__()
        self.run = self.loop.run
        self.run(self._start())
        self.count = 0
        self.firing: dict[tuple[str, str], str] = {}  # (alert, symbol) -> fingerprint
        self.requests: list[Request] = []
        self.mode = "enforce"
        self.glass = False
        self.stopped_at: int | None = None
        """Index into the exchange's calls from which automation may not act."""

    async def _start(self) -> None:
        self.stack = await start_stack(
            f"responder_relprop_{uuid.uuid4().hex[:10]}", self.rules_dir, self.exchange_port,
            step_deadline_s=1.0, reconcile_interval_s=0, sweep_interval_s=0.2)
        self.exchange, self.daemon, self.http = (self.stack.exchange, self.stack.daemon,
                                                 self.stack.http)
        await append_lock.watch_daemon(self.daemon)

    async def _stop(self) -> None:
        await self.stack.stop()

    def teardown(self) -> None:
        self.run(self._stop())

    @property
    def is_enforcing(self) -> bool:
        return self.mode == "enforce" and not self.glass

    # -- helpers ------------------------------------------------------------------------

    async def _api(self, method: str, path: str, token: str,
                   body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, f"http://127.0.0.1:{self.daemon.port}{path}",
                                     json=body,
                                     headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json()

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        state = self.daemon.state
        assert state is not None
        async with state.pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def _settled(self) -> None:
        """No step in flight, and none that may act left pending."""
        state = self.daemon.state
        assert state is not None
        for _ in range(500):
            pending = (await self._fetch("SELECT count(*) AS n FROM steps"
                                         " WHERE status = 'pending'"))[0]["n"]
            busy = state.executor.inflight or state.metrics.steps_inflight._value.get()
            if not busy and (pending == 0 or not self.is_enforcing):
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the daemon never settled")

    async def _post(self, name: str, symbol: str, status: str, fingerprint: str) -> None:
        alert = {"status": status, "labels": {"alertname": name, "severity": "sev1",
                                              "symbol": symbol},
                 "annotations": {}, "startsAt": f"2026-11-23T06:{self.count % 60:02d}:00Z",
                 "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else
                 "2026-11-23T07:00:00Z", "generatorURL": "", "fingerprint": fingerprint}
        body = json.dumps({"version": "4", "status": status, "receiver": "r", "groupKey": "",
                           "truncatedAlerts": 0, "alerts": [alert]}).encode()
        async with self.http.post(f"http://127.0.0.1:{self.daemon.port}/webhooks/alertmanager",
                                  data=body,
                                  headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}) as r:
            assert r.status == 200, await r.text()
        await self._settled()

    async def _held(self, symbol: str) -> tuple[str, int | None]:
        rows = await self._fetch("SELECT level, containment FROM control_levels"
                                 " WHERE control = 'symbol-mode' AND key = $1", symbol)
        return (rows[0]["level"], rows[0]["containment"]) if rows else ("NORMAL", None)

    async def _stop_automation(self, was: bool, method: str, path: str, body: Any) -> None:
        status, answer = await self._api(method, path, ADMIN_TOKEN, body)
        assert status == 200, answer
        # A call already past its last mode check may still land: wait for those.
        await self._settled()
        if was:
            self.stopped_at = len(self.exchange.calls)

    async def _resume_check(self) -> None:
        """Enforcing again: what went out while stopped was manual only; then every open
        incident whose alert fires is contained (after a reconcile pass for drift)."""
        self._assert_no_automatic_calls()
        self.stopped_at = None
        state = self.daemon.state
        assert state is not None and self.daemon.reconciler is not None
        for _ in range(250):  # the resumer plans within a few tenths of a second
            await self._settled()
            await self.daemon.reconciler.pass_once()
            if await self._uncontained() == []:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"still-firing SEV1s uncontained: {await self._uncontained()}")

    async def _uncontained(self) -> list[str]:
        state = self.daemon.state
        assert state is not None
        rows = await self._fetch(
            "SELECT DISTINCT i.id, i.rule_id, i.scope FROM incidents i"
            " JOIN incident_alerts a ON a.incident_id = i.id AND a.firing"
            " WHERE i.status = 'open'")
        missing = []
        for r in rows:
            rule = state.rules.rule(r["rule_id"])
            assert rule is not None
            symbol = r["scope"].removeprefix("symbol=")
            for step in rule.steps:
                if step.control.name == "withdrawals":
                    level = self.exchange.withdrawals
                else:
                    level = self.exchange.symbols.get(symbol, "NORMAL")
                if step.control.rank(level) < step.control.rank(step.level):
                    missing.append(f"{r['rule_id']} {symbol}: {step.control.name} at {level}")
        return missing

    def _assert_no_automatic_calls(self) -> None:
        if self.stopped_at is None:
            return
        automatic = [(c.path, c.body, c.idempotency_key)
                     for c in self.exchange.calls[self.stopped_at:]
                     if not (c.idempotency_key or "").startswith(MANUAL)]
        assert automatic == [], f"automatic calls while not enforcing: {automatic}"

    # -- rules --------------------------------------------------------------------------

    @initialize()
    def contained(self) -> None:
        """Start with something held, so every sequence has containment to work on, and
        two open release requests for one key (operator A asking twice)."""
        self.fire(ALERTS[1], "BTC-USD")  # HARD_HALT
        self.fire(ALERTS[0], "ETH-USD")  # CANCEL_ONLY, and withdrawals HALTED
        self.request_release("BTC-USD", 2)

    @rule(name=st.sampled_from(ALERTS), symbol=st.sampled_from(SYMBOLS))
    def fire(self, name: str, symbol: str) -> None:
        """A new alert: contains, or contains again after a release."""
        self.count += 1
        fingerprint = f"{name}-{symbol}-{self.count}"
        self.firing[(name, symbol)] = fingerprint
        self.run(self._post(name, symbol, "firing", fingerprint))

    @rule(symbol=st.sampled_from(SYMBOLS))
    def recontain(self, symbol: str) -> None:
        """A new split-brain on the key: contained again (to HARD_HALT), a new incident if
        a release closed the last one."""
        self.fire(ALERTS[1], symbol)

    @precondition(lambda self: bool(self.firing))
    @rule(data=st.data())
    def resolve(self, data: st.DataObject) -> None:
        name, symbol = data.draw(st.sampled_from(sorted(self.firing)))
        self.run(self._post(name, symbol, "resolved", self.firing.pop((name, symbol))))

    @rule(symbol=st.sampled_from(SYMBOLS), times=st.integers(1, 2))
    def request_release(self, symbol: str, times: int) -> None:
        """One operator asks for the next stop down, once or twice (two open requests)."""
        state = self.daemon.state
        assert state is not None
        level, containment = self.run(self._held(symbol))
        to_level = state.rules.controls["symbol-mode"].release_next(level)
        if to_level is None:
            return
        for _ in range(times):
            status, body = self.run(self._api(
                "POST", f"/v1/controls/symbol-mode/{symbol}/release", OPERATOR_TOKEN,
                {"to_level": to_level, "reason": "checked", "ticket": "INC-9"}))
            assert status == 202, body
            assert (body["from"], body["containment"]) == (level, containment)
            self.requests.append(Request(body["request_id"], symbol, level, to_level,
                                         body["containment"]))

    @precondition(lambda self: bool(self.requests))
    @rule(data=st.data(), then_recontain=st.booleans())
    def approve(self, data: st.DataObject, then_recontain: bool) -> None:
        """A second operator approves; the key may be contained again right after."""
        request = data.draw(st.sampled_from(self.requests))
        level, containment = self.run(self._held(request.symbol))
        before = self.exchange.symbols.get(request.symbol, "NORMAL")
        status, body = self.run(self._api("POST", f"/v1/release-requests/{request.id}/approve",
                                          SECOND_OPERATOR_TOKEN))
        if status == 200:
            assert (containment, level) == (request.containment, request.from_level), (
                "released a containment the request did not name")
            assert self.exchange.symbols[request.symbol] == request.to_level
        else:
            assert status in (409, 502), body
            if status == 409:
                assert self.exchange.symbols.get(request.symbol, "NORMAL") == before
        if status == 200 or body.get("error") in ("not_pending", "stale_request"):
            self.requests.remove(request)  # settled: later draws go to open requests
        if status == 200 and then_recontain:
            self.recontain(request.symbol)

    @precondition(lambda self: bool(self.requests))
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(self.requests))
        state = self.daemon.state
        assert state is not None

        async def go() -> None:
            await self._fetch("UPDATE release_requests SET expires_at = now()"
                              " WHERE id = $1 AND status = 'pending'", request.id)
            await state.writer.submit(expire_requests)

        self.run(go())

    @rule(mode=st.sampled_from(["enforce", "dry_run", "paused"]))
    def switch_mode(self, mode: str) -> None:
        if mode == "enforce":
            status, _ = self.run(self._api("POST", "/v1/mode", ADMIN_TOKEN,
                                           {"mode": mode, "reason": "exercise"}))
            assert status == 200
            self.mode = mode
            if self.is_enforcing:
                self.run(self._resume_check())
            return
        was, self.mode = self.is_enforcing, mode
        self.run(self._stop_automation(was, "POST", "/v1/mode", {"mode": mode, "reason": "x"}))

    @precondition(lambda self: not self.glass)
    @rule()
    def break_glass(self) -> None:
        was, self.glass = self.is_enforcing, True
        self.run(self._stop_automation(was, "POST", "/v1/break-glass",
                                       {"ttl_s": 600, "reason": "hands on"}))

    @precondition(lambda self: self.glass)
    @rule()
    def end_break_glass(self) -> None:
        status, _ = self.run(self._api("DELETE", "/v1/break-glass", ADMIN_TOKEN,
                                       {"reason": "hands off"}))
        assert status == 200
        self.glass = False
        if self.is_enforcing:
            self.run(self._resume_check())

    @rule(symbol=st.sampled_from(SYMBOLS), withdrawals=st.booleans())
    def drift(self, symbol: str, withdrawals: bool) -> None:
        """Someone lowers a level directly on the target; a reconcile pass follows."""
        if withdrawals:
            self.exchange.withdrawals = "OPEN"
        else:
            held, _ = self.run(self._held(symbol))
            self.exchange.symbols[symbol] = LEVELS[max(0, LEVELS.index(held) - 1)]
        assert self.daemon.reconciler is not None
        self.run(self.daemon.reconciler.pass_once())

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def steps_and_levels_are_written_under_the_append_lock(self) -> None:
        """What early claims rely on (tests/append_lock.py), whatever the sequence."""
        assert self.run(append_lock.unlocked_in(self.daemon)) == []

    @invariant()
    def nothing_automatic_while_stopped(self) -> None:
        self._assert_no_automatic_calls()

    @invariant()
    def every_approved_release_is_what_was_requested(self) -> None:
        rows = self.run(self._fetch(
            "SELECT a.body, r.from_level, r.to_level, r.containment FROM action_log a"
            " JOIN release_requests r ON r.id = (a.body::jsonb -> 'detail' ->> 'request_id')"
            "::bigint WHERE a.kind = 'release'"))
        for r in rows:
            detail = json.loads(r["body"])["detail"]
            assert (detail["from"], detail["to"], detail["containment"]) == (
                r["from_level"], r["to_level"], r["containment"]), detail


@pytest.mark.timeout(300)
def test_releases_name_their_containment_and_automation_obeys_the_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Releases release only what was requested; nothing automatic happens outside enforce;
    still-firing SEV1s are contained once enforce resumes."""
    rules_dir = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules_dir)
    controls = rules_dir / "controls.yaml"
    controls.write_text(controls.read_text().replace(
        "    release_stops: [NORMAL, CANCEL_ONLY]\n",
        "    release_stops: [NORMAL, CANCEL_ONLY]\n    two_person_release: true\n", 1))
    run_machine(ReleasesAndModes, tmp_path, monkeypatch, max_examples=30, steps=16,
                rules_dir=rules_dir)
