"""A stateful property test: whatever happens, automation never lowers a level, and only an
authorised release with a reason and a ticket does.

Hypothesis interleaves alerts, re-deliveries, resolves, target failures, releases by each
role (with and without a ticket), mode switches and drift against a real daemon, the real
PostgreSQL and the simulated exchange, which runs in a background event loop.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from examples.exchange import Faults
from tests import append_lock
from tests.conftest import (
    ADMIN_TOKEN,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    WEBHOOK_TOKEN,
)
from tests.live_stack import Loop, run_machine, start_stack

T = TypeVar("T")
SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]
ALERTS = ["LedgerInvariantViolation", "SplitBrainSuspected"]
TOKENS = {"viewer": VIEWER_TOKEN, "operator": OPERATOR_TOKEN, "admin": ADMIN_TOKEN}
SYMBOL_LEVELS = ("NORMAL", "CANCEL_ONLY", "SOFT_HALT", "HARD_HALT")
RANKS = {"/admin/withdrawals": ("OPEN", "HALTED")}


def rank(path: str, level: str) -> int:
    return RANKS.get(path, SYMBOL_LEVELS).index(level)


class Containment(RuleBasedStateMachine):
    loop: Loop
    rules_dir: Path
    exchange_port = 0

    def __init__(self) -> None:
        super().__init__()
        self.run = self.loop.run
        self.run(self._start())
        self.sent: list[bytes] = []
        self.count = 0

    async def _start(self) -> None:
        self.stack = await start_stack(
            f"responder_prop_{uuid.uuid4().hex[:10]}", self.rules_dir, self.exchange_port,
            step_deadline_s=0.5, reconcile_interval_s=0)
        self.exchange, self.daemon, self.http = (self.stack.exchange, self.stack.daemon,
                                                 self.stack.http)
        await append_lock.watch_daemon(self.daemon)

    async def _stop(self) -> None:
        await self.stack.stop()

    def teardown(self) -> None:
        self.run(self._stop())

    async def _post(self, body: bytes) -> None:
        async with self.http.post(f"http://127.0.0.1:{self.daemon.port}/webhooks/alertmanager",
                                  data=body,
                                  headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}) as r:
            assert r.status == 200, await r.text()
        await self._idle()

    async def _idle(self) -> None:
        state = self.daemon.state
        assert state is not None
        for _ in range(500):
            async with state.pool.acquire() as conn:
                pending = await conn.fetchval("SELECT count(*) FROM steps"
                                              " WHERE status = 'pending'")
            if pending == 0 and not state.executor.inflight:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("executor never went idle")

    def _payload(self, name: str, symbol: str, status: str, fresh: bool) -> bytes:
        if fresh:
            self.count += 1
        alert = {"status": status, "labels": {"alertname": name, "severity": "sev1",
                                              "symbol": symbol},
                 "annotations": {}, "startsAt": f"2026-11-23T06:00:{self.count % 60:02d}Z",
                 "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else
                 "2026-11-23T07:00:00Z",
                 "generatorURL": "", "fingerprint": f"{name}-{symbol}-{self.count}"}
        return json.dumps({"version": "4", "status": status, "receiver": "r", "groupKey": "",
                           "truncatedAlerts": 0, "alerts": [alert]}).encode()

    @rule(name=st.sampled_from(ALERTS), symbol=st.sampled_from(SYMBOLS))
    def fire(self, name: str, symbol: str) -> None:
        body = self._payload(name, symbol, "firing", fresh=True)
        self.sent.append(body)
        self.run(self._post(body))

    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        if self.sent:
            self.run(self._post(data.draw(st.sampled_from(self.sent))))

    @rule(name=st.sampled_from(ALERTS), symbol=st.sampled_from(SYMBOLS))
    def resolve(self, name: str, symbol: str) -> None:
        self.run(self._post(self._payload(name, symbol, "resolved", fresh=False)))

    @rule(failures=st.integers(1, 3), status=st.sampled_from([500, 503, 409]))
    def target_fails(self, failures: int, status: int) -> None:
        self.exchange.faults = Faults(fail_next=failures, fail_status=status)

    @rule()
    def target_recovers(self) -> None:
        self.exchange.faults = Faults()

    @rule(role=st.sampled_from(list(TOKENS)), symbol=st.sampled_from(SYMBOLS),
          to_level=st.sampled_from(SYMBOL_LEVELS), ticket=st.sampled_from(["INC-7", ""]))
    def release(self, role: str, symbol: str, to_level: str, ticket: str) -> None:
        body = {"to_level": to_level, "reason": "checked by hand", "ticket": ticket}
        status = self.run(self._call("POST", f"/v1/controls/symbol-mode/{symbol}/release",
                                     TOKENS[role], body))
        if role == "viewer":
            assert status == 403
        if not ticket:
            assert status in (400, 403)

    @rule(mode=st.sampled_from(["enforce", "dry_run", "paused", "enforce"]))
    def switch_mode(self, mode: str) -> None:
        status = self.run(self._call("POST", "/v1/mode", ADMIN_TOKEN,
                                     {"mode": mode, "reason": "exercise"}))
        assert status == 200

    @rule()
    def drift(self) -> None:
        self.exchange.forget()
        assert self.daemon.reconciler is not None
        self.run(self.daemon.reconciler.pass_once())

    async def _call(self, method: str, path: str, token: str, body: Any) -> int:
        async with self.http.request(method, f"http://127.0.0.1:{self.daemon.port}{path}",
                                     json=body,
                                     headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status

    @invariant()
    def steps_and_levels_are_written_under_the_append_lock(self) -> None:
        """What early claims rely on (tests/append_lock.py), whatever the sequence."""
        assert self.run(append_lock.unlocked_in(self.daemon)) == []

    @invariant()
    def only_authorised_releases_lower(self) -> None:
        last: dict[str, str] = {}
        for call in self.exchange.calls:
            if not call.applied or not isinstance(call.body, dict):
                continue
            level = next(iter(call.body.values()))
            previous = last.get(call.path)
            if previous is not None and rank(call.path, level) < rank(call.path, previous):
                key = call.idempotency_key or ""
                assert key.startswith("responder-manual-"), (
                    f"automatic lowering of {call.path}: {previous} -> {level}")
                self._assert_release_recorded(key)
            last[call.path] = level
        # A forget() (drift) lowers the target outside responder: start again from there.
        for path in list(last):
            if path.startswith("/admin/symbols/"):
                current = self.exchange.symbols.get(path.split("/")[3], "NORMAL")
            elif path == "/admin/withdrawals":
                current = self.exchange.withdrawals
            else:
                current = self.exchange.global_mode
            last[path] = current

    def _assert_release_recorded(self, key: str) -> None:
        async def fetch() -> list[str]:
            state = self.daemon.state
            assert state is not None
            async with state.pool.acquire() as conn:
                return [r["body"] for r in await conn.fetch(
                    "SELECT body FROM action_log WHERE kind = 'release' AND body LIKE $1",
                    f"%{key}%")]

        [body] = self.run(fetch())
        detail = json.loads(body)["detail"]
        assert detail["by"] in ("olga", "ada") and detail["role"] in ("operator", "admin")
        assert detail["reason"] and detail["ticket"]


@pytest.mark.timeout(600)
def test_no_automatic_lowering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only an authorised release with a reason and a ticket ever lowers a level."""
    run_machine(Containment, tmp_path, monkeypatch, max_examples=12, steps=15)


