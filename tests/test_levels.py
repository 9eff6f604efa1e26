"""Changing a key's level: a person's change whose call went out is recorded, whatever
happens to the caller."""

from __future__ import annotations

import asyncio
import contextlib

from examples.exchange import Faults
from responder.api.controls import manual
from responder.auth import Principal
from responder.engine.manual import ManualChange, apply_manual
from tests.conftest import DaemonFactory, Exchange, log_kinds, query, wait_for


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
