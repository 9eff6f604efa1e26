"""Change a key's level: the one place that takes a key, calls its target, reads the level
back and records what happened.

Automatic steps (engine/runner.py), people's changes (engine/manual.py) and drift repair
(engine/reconciler.py) all come here, so they share one order of locks and one rule for
the record:

- A key is taken across replicas first (store/claims.py ``hold_key``, which may wait),
  then in this process (``KeyLocks``). Waiting for the other replicas while holding the
  local lock would only wait out the caller's own timeout: a step claimed while it was
  recorded needs the local lock to finish.
- No call without its record first (``intent``), and no call that went out without its
  outcome recorded. The intent, call, read-back and record run in a task of their own
  that a cancelled caller does not stop (``asyncio.shield``). A step is ``resumable``: its
  pending row and Idempotency-Key already are its record, and the next start calls again
  with the same key, so only its outcome record is shielded and a shutdown may cancel the
  call itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import structlog

from responder.actions.admin_http import AdminClient, CallFailed, CallRecord
from responder.errors import ActionError
from responder.rules.table import Control
from responder.store.claims import hold_key
from responder.store.types import Pool
from responder.store.writer import Unit, Writer

log = structlog.get_logger("responder.engine")

T = TypeVar("T")


class KeyLock(asyncio.Lock):
    """The per-key lock, counting how often it was taken: a step claimed while it was
    recorded may skip its claim and held-level reads only if nothing else took the key's
    lock since (no other step, person or drift repair touched the key here)."""

    taken = 0

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        self.taken += 1
        return True


class KeyLocks:
    """The locks that serialise every change to one control key in this process."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[tuple[str, str], KeyLock] = (
            weakref.WeakValueDictionary())

    def lock(self, control: str, key: str) -> KeyLock:
        lock = self._locks.get((control, key))
        if lock is None:
            lock = KeyLock()
            self._locks[(control, key)] = lock
        return lock


@contextlib.asynccontextmanager
async def take_key(pool: Pool, locks: KeyLocks, control: str, key: str,
                   wait_s: float) -> AsyncIterator[None]:
    """Hold the key across replicas (waiting up to ``wait_s``; KeyBusy past it), then here."""
    async with hold_key(pool, control, key, wait_s), locks.lock(control, key):
        yield


@dataclass(frozen=True)
class Change:
    """A level to apply to one key, and how long its call and read-back may take."""

    control: Control
    key: str
    level: str
    idempotency_key: str
    deadline_s: float
    audit: Mapping[str, str]
    read_back_s: float | None
    """None: no read-back (the control declares no read)."""


@dataclass(frozen=True)
class Outcome:
    """What the target did: its call's record, or why the call failed, and the read-back."""

    call: CallRecord | None = None
    error: ActionError | None = None
    verified: bool | None = None
    observed: str | None = None
    reads: tuple[CallRecord, ...] = ()

    @property
    def failed_call(self) -> CallRecord | None:
        """The record of a call that failed (it may have reached the target)."""
        return self.error.record if isinstance(self.error, CallFailed) else None


async def call(client: AdminClient, change: Change) -> Outcome:
    """Call the target and read the level back; never raises an ActionError."""
    try:
        record = await client.apply(change.control, change.key, change.level,
                                    change.idempotency_key, change.deadline_s, change.audit)
    except ActionError as e:
        return Outcome(error=e)
    if change.read_back_s is None:
        return Outcome(call=record)
    verified, observed, reads = await client.verify(change.control, change.key, change.level,
                                                    change.read_back_s)
    return Outcome(call=record, verified=verified, observed=observed, reads=tuple(reads))


_running: set[asyncio.Task[Any]] = set()
"""Applies in flight, kept referenced until they have recorded their outcome."""


def _orphaned(task: asyncio.Task[Any]) -> None:
    """An apply whose caller was cancelled ended: nobody else will see its error."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("a level change could not record its outcome", error=repr(error))


async def apply(client: AdminClient, writer: Writer, change: Change,
                record: Callable[[Outcome], Unit[T] | None], *,
                intent: Unit[object] | None = None, resumable: bool = False,
                still_ours: Callable[[], bool] = lambda: True) -> tuple[Outcome, T | None]:
    """Record the intent, call, read back, and record the outcome as ``record`` builds it
    (None: nothing to record, as when ``still_ours`` says another holder took over)."""

    async def finish(outcome: Outcome) -> T | None:
        unit = record(outcome) if still_ours() else None
        return None if unit is None else await writer.submit(unit)

    if resumable:
        if intent is not None:
            await writer.submit(intent)
        outcome = await call(client, change)
        if not still_ours():
            return outcome, None
        return outcome, await _outliving(finish(outcome))

    async def whole() -> tuple[Outcome, T | None]:
        # An intent handed to the writer is committed even if its caller is cancelled
        # while it waits, so the call it announces is made and recorded too: the log never
        # holds an intent that nothing followed.
        if intent is not None:
            await writer.submit(intent)
        outcome = await call(client, change)
        return outcome, await finish(outcome)

    return await _outliving(whole())


async def _outliving(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end even if the caller is cancelled. A cancelled caller still
    waits for it, so the key it holds stays held until the outcome is recorded; a second
    cancel stops the wait, not the work."""
    task = asyncio.ensure_future(work)
    _running.add(task)
    task.add_done_callback(_running.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            task.add_done_callback(_orphaned)
            await asyncio.wait({task})
        raise
