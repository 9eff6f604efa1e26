"""Changing a key's level: a change whose call went out is recorded, whatever happens to
the caller."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from examples.exchange import Faults
from responder.api.controls import manual
from responder.auth import Principal
from responder.engine import levels
from responder.engine.levels import Change, Outcome
from responder.engine.manual import ManualChange, apply_manual
from responder.store.actionlog import ChainAppender, Entry
from responder.store.kinds import Kind
from responder.store.types import Conn
from responder.store.writer import Unit
from tests.conftest import (
    DaemonFactory,
    Exchange,
    fixture_bytes,
    idle,
    log_kinds,
    post_alerts,
    query,
    wait_for,
)


async def test_a_cancelled_manual_containment_still_records_its_outcome(
    make_daemon: DaemonFactory, exchange: Exchange, database: str,
) -> None:
    """A containment cancelled after its call reached the target is still recorded and held,
    and its caller gives the key back only once that record is written."""
    daemon = await make_daemon()
    assert daemon.state is not None
    exchange.state.faults = Faults(delay_s=0.5)
    change = ManualChange("contain", "global-mode", "-", "SOFT_HALT", "custodian outage", None,
                          Principal("olga", "operator"))
    task = asyncio.create_task(apply_manual(manual(daemon.state), change))
    await wait_for(lambda: exchange.state.total_inflight > 0,
                   what="the call reached the target")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    # The cancelled caller returns only once the outcome is recorded: the key stayed held.
    assert "manual_contain" in await log_kinds(database)
    assert not daemon.state.executor.key_lock("global-mode", "").locked()
    assert exchange.state.global_mode == "SOFT_HALT"
    [row] = await query(database, "SELECT level, set_kind, set_by FROM control_levels"
                                  " WHERE control = 'global-mode'")
    assert (row["level"], row["set_kind"], row["set_by"]) == ("SOFT_HALT", "manual", "olga")
    kinds = await log_kinds(database)
    assert kinds.index("contain_intent") < kinds.index("manual_contain")


async def test_a_cancelled_drift_repair_still_records_its_outcome(
    make_daemon: DaemonFactory, exchange: Exchange, http: aiohttp.ClientSession, database: str,
) -> None:
    """A reconcile pass cancelled while its repair call is at the target still records it."""
    daemon = await make_daemon()
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await idle(daemon)
    exchange.state.forget()
    exchange.state.faults = Faults(delay_s=0.5)
    assert daemon.reconciler is not None
    task = asyncio.create_task(daemon.reconciler.pass_once())
    await wait_for(lambda: exchange.state.total_inflight > 0,
                   what="a repair call reached the target")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    async def recorded() -> bool:
        kinds = await log_kinds(database)
        return kinds.count("drift_corrected") == kinds.count("drift_detected") > 0

    await wait_for(recorded, what="every repair that was called recorded")


async def test_a_change_cancelled_while_its_intent_is_written_still_calls_and_records(
    make_daemon: DaemonFactory, exchange: Exchange, database: str,
) -> None:
    """An intent handed to the writer is committed whatever becomes of its caller, so a
    caller cancelled while it waits for that commit still makes the call it announced and
    records the outcome: the log never holds an intent that nothing followed."""
    daemon = await make_daemon()
    assert daemon.state is not None
    state = daemon.state
    control = state.rules.controls["global-mode"]
    writing, gate = asyncio.Event(), asyncio.Event()

    async def intent(conn: Conn, chain: ChainAppender) -> None:
        writing.set()
        await gate.wait()  # the caller is cancelled while its intent is being written
        chain.add(Entry(Kind.DRIFT_DETECTED, control=control.name, key="", detail={}))

    def record(outcome: Outcome) -> Unit[None]:
        async def unit(conn: Conn, chain: ChainAppender) -> None:
            chain.add(Entry(Kind.DRIFT_CORRECTED, control=control.name, key="",
                            detail={"verified": outcome.verified}))
        return unit

    change = Change(control, "", "SOFT_HALT", "test-cancelled-intent", 5.0, {}, 5.0)
    task = asyncio.create_task(levels.apply(state.client, state.writer, change, record,
                                            intent=intent))
    await writing.wait()
    task.cancel()
    gate.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert exchange.state.global_mode == "SOFT_HALT"
    kinds = await log_kinds(database)
    assert kinds.count("drift_detected") == kinds.count("drift_corrected") == 1
