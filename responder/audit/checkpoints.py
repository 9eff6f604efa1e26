"""Sign checkpoints of the action log's tree, store them, and send them to the witnesses.

Any replica may sign: all of them append to one tree (sequence numbers and tree nodes are
primary keys, so two replicas cannot both write leaf n), they share the signing key, and
Ed25519 is deterministic, so a checkpoint of size n is the same note whoever signs it. The
interval checkpoint runs on the leader only, to avoid needless duplicates; the checkpoint
after a SEV1 containment is signed by the replica that contained.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable, Iterable, Sequence

import structlog

from responder.config import SinkSpec
from responder.errors import StoreError
from responder.store import audit
from responder.store.db import acquire
from responder.store.outbox import OutboxRow
from responder.store.types import Conn, Pool, Row
from responder.tlog.note import Checkpoint, Notary

log = structlog.get_logger("responder.audit")

def signed(notary: Notary, size: int, root: bytes) -> tuple[Checkpoint, str]:
    checkpoint = Checkpoint(notary.origin, size, root)
    return checkpoint, notary.signer.sign(checkpoint.body())


Delivery = OutboxRow
"""An outbox row; a checkpoint belongs to no incident."""


def deliveries(checkpoint: Checkpoint, note: str, sinks: Sequence[SinkSpec]) -> list[Delivery]:
    payload = json.dumps({"kind": "checkpoint", "origin": checkpoint.origin,
                          "tree_size": checkpoint.size,
                          "root": base64.b64encode(checkpoint.root).decode(), "note": note,
                          "summary": f"action log checkpoint {checkpoint.origin}"
                                     f" at {checkpoint.size} records"})
    # A Slack-style sink would keep only the summary line: no witness.
    return [(None, s.name, "checkpoint", f"checkpoint-{checkpoint.size}-{s.name}", payload)
            for s in sinks if s.bundles and s.kind != "slack"]


async def store(conn: Conn, checkpoint: Checkpoint, note: str, reason: str,
                sinks: Sequence[SinkSpec] = ()) -> bool:
    """Keep a signed checkpoint and queue it for the sinks; False if that size was known.
    Runs in the caller's transaction (a bundle's, in the writer)."""
    return await audit.store_checkpoint(conn, checkpoint.size, checkpoint.root, note, reason,
                                        deliveries(checkpoint, note, sinks))


async def sign_latest(conn: Conn, notary: Notary, reason: str,
                      sinks: Sequence[SinkSpec] = ()) -> tuple[Checkpoint, str] | None:
    """Sign the tree as committed now; None while the log is empty."""
    committed = await audit.committed_tree(conn)
    if committed is None:
        return None
    checkpoint, note = signed(notary, *committed)
    # Apart from the read: a replica storing the same size meanwhile is no conflict.
    await audit.save_checkpoint(conn, checkpoint.size, checkpoint.root, note, reason,
                                deliveries(checkpoint, note, sinks))
    return checkpoint, note


async def latest(conn: Conn) -> Row | None:
    return await audit.latest(conn)


class Checkpointer:
    """Signs at an interval (on the leader) and after each SEV1 containment (anywhere)."""

    def __init__(self, pool: Pool, notary: Notary, sinks: Sequence[SinkSpec], *,
                 delivered: Callable[[], None] | None = None) -> None:
        self._pool = pool
        self._notary = notary
        self._sinks = sinks
        self._delivered = delivered
        self._touched: set[int] = set()
        self._wake = asyncio.Event()

    def touch(self, incident_ids: Iterable[int]) -> None:
        """Incidents whose containment work just ended: sign if one was a SEV1 applied."""
        self._touched.update(incident_ids)
        if self._touched:
            self._wake.set()

    async def sign(self, reason: str) -> tuple[Checkpoint, str] | None:
        async with acquire(self._pool) as conn:
            made = await sign_latest(conn, self._notary, reason, self._sinks)
        if made is not None:
            log.info("checkpoint signed", tree_size=made[0].size, reason=reason)
        if self._delivered is not None:
            self._delivered()
        return made

    async def every(self, interval_s: float) -> None:
        """Leader work: a checkpoint per interval (none while nothing was appended)."""
        while True:
            try:
                await self.sign("interval")
            except StoreError as e:
                log.warning("checkpoint not signed: store unavailable", error=str(e))
            await asyncio.sleep(interval_s)

    async def after_containment(self, debounce_s: float = 0.2) -> None:
        """One checkpoint shortly after SEV1 containment: containments that end within
        ``debounce_s`` of each other share it (it covers them all)."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(debounce_s)
            self._wake.clear()
            ids, self._touched = sorted(self._touched), set()
            try:
                async with acquire(self._pool) as conn:
                    row = await latest(conn)
                    since = row["tree_size"] if row else 0
                    due = await audit.sev1_applied_since(conn, ids, since)
                if due:
                    await self.sign("sev1_contained")
            except StoreError as e:
                log.warning("checkpoint not signed: store unavailable", error=str(e))
                self._touched.update(ids)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                self._wake.set()
