"""Group commit: one task writes queued units of work in shared transactions.

Callers submit a unit (an async function of a connection and the chain appender) and wait
for its result, which is only delivered after the transaction holding it has committed.
Batching turns many small durable writes into one commit; units of a type that offers
``run_many`` are merged so that a batch costs a few statements, not a few per unit. A unit
whose type has ``linger_s`` can wait that long for company: a batch of only such units is
held back until another unit arrives or the time is up. The writer's transactions run on
one connection, which keeps the action log's head between them (store/append_tx.py). A
batch that fails for any reason other than the store being unreachable is retried unit by
unit, so one poisonous unit fails alone.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import structlog

if TYPE_CHECKING:
    from responder.tlog.note import Notary

from responder.errors import StoreError, StoreRefused, StoreUnavailable
from responder.store.actionlog import ChainAppender, HeadStale
from responder.store.append_tx import AppendTransactions
from responder.store.db import UNAVAILABLE
from responder.store.types import Conn

T = TypeVar("T")
Unit = Callable[[Conn, ChainAppender], Awaitable[T]]
_Item = tuple[Unit[Any], "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]

CHAIN_CONFLICT_RETRIES = 5

log = structlog.get_logger("responder.store")


# SQLSTATE classes that are about the data written, not the store: data exception,
# integrity constraint violation, program limit exceeded (a value too large to index).
DATA_CLASSES = ("22", "23", "54")


def _refused(error: Exception) -> Exception:
    """A unit that failed alone, in the store's own terms: StoreRefused when PostgreSQL
    refused its data, StoreError for any other PostgreSQL failure (a full disk is not the
    unit's fault), and anything else (a bug in the unit) as it is."""
    if not isinstance(error, asyncpg.PostgresError):
        return error
    text = f"{type(error).__name__}: {error}"
    mapped = (StoreRefused(f"the store refused the data: {text}")
              if (error.sqlstate or "")[:2] in DATA_CLASSES else StoreError(f"store error: {text}"))
    mapped.__cause__ = error
    return mapped


class _ChainMoved(Exception):
    """Another writer appended to the action log since our head was read."""


class Writer:
    """Serialises durable writes through batched transactions."""

    def __init__(self, pool: asyncpg.Pool, rules_hash: Callable[[], str], *,
                 max_pending: int = 10_000, max_batch: int = 256,
                 signed_hash: Callable[[], str] | None = None,
                 notary: Notary | None = None) -> None:
        self._notary = notary
        self._rules_hash = rules_hash
        self._signed_hash = signed_hash or (lambda: "")
        self.changed: Callable[[set[int]], None] | None = None
        """Told, after each commit, which incidents its records changed: every change to
        an incident reaches its evidence, whichever path wrote it."""
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=max_pending)
        self._company: asyncio.Future[None] | None = None
        """While a batch lingers: settled when a unit that does not linger is queued (a
        future, not an Event, so that the writer wakes in one step of the loop)."""
        self._max_batch = max_batch
        self._tx = AppendTransactions(pool)
        self.batches = 0

    async def submit(self, unit: Unit[T]) -> T:
        """Run ``unit`` in a committed transaction; StoreUnavailable if it cannot be."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((unit, fut))
        except asyncio.QueueFull:
            raise StoreUnavailable("write backlog is full") from None
        if not getattr(type(unit), "linger_s", 0.0) and self._company is not None:
            _settle(self._company)
        return await fut

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        """Write batches until stop() has been called and the queue is drained."""
        try:
            while await self._next_batch():
                pass
        finally:
            await self._tx.drop()

    async def _next_batch(self) -> bool:
        first = await self._queue.get()
        if first is None:
            return False
        batch = [first]
        more = self._drain(batch)
        linger = min(getattr(type(unit), "linger_s", 0.0) for unit, _ in batch)
        if more and linger > 0:
            # Only units that can wait: give other work a moment to share the commit.
            loop = asyncio.get_running_loop()
            self._company = company = loop.create_future()
            timer = loop.call_later(linger, _settle, company)
            try:
                await company
            finally:
                timer.cancel()
                self._company = None
            more = self._drain(batch)
        await self._write(batch)
        return more

    def _drain(self, batch: list[_Item]) -> bool:
        """Add what is queued to the batch, up to its size; False once stop() was seen."""
        while len(batch) < self._max_batch and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                return False
            batch.append(item)
        return True

    def stop(self) -> None:
        """Ask run() to finish once what is already queued has been written."""
        # The sentinel must get in even when the queue is full, or shutdown would hang.
        while True:
            try:
                self._queue.put_nowait(None)
            except asyncio.QueueFull:
                dropped = self._queue.get_nowait()
                if dropped is not None and not dropped[1].done():
                    dropped[1].set_exception(StoreUnavailable("shutting down"))
            else:
                if self._company is not None:  # a lingering batch need not wait now
                    _settle(self._company)
                return

    async def _write(self, batch: list[_Item]) -> None:
        try:
            outcomes = await self._commit_retrying(batch)
        except StoreUnavailable as e:
            log.warning("write batch failed: store unavailable", error=str(e), units=len(batch))
            outcomes = [(fut, None, e) for _, fut in batch]
        except Exception as e:
            if len(batch) == 1:
                log.exception("write unit failed", error=f"{type(e).__name__}: {e}")
                outcomes = [(batch[0][1], None, _refused(e))]
            else:
                for item in batch:  # find the poisonous unit; the others still commit
                    await self._write([item])
                return
        for fut, result, error in outcomes:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

    async def _commit_retrying(self, batch: list[_Item]) -> list[_Outcome]:
        for _ in range(CHAIN_CONFLICT_RETRIES):
            try:
                return await self._commit(batch)
            except _ChainMoved:
                # Another replica appended first; a little jitter keeps two from colliding
                # again on their next attempt.
                await asyncio.sleep(random.uniform(0, 0.005))  # noqa: S311 - not crypto
                continue
        raise StoreUnavailable("action log head kept moving; retry later")

    async def _commit(self, batch: list[_Item]) -> list[_Outcome]:
        results: list[_Outcome] = []
        tx = self._tx
        try:
            conn = await tx.begin()
            chain = ChainAppender(conn, self._rules_hash(), tx.head, self._notary,
                                  self._signed_hash(), tx.nodes)
            await chain.catch_up()
            for group in _groups(batch):
                units = [unit for unit, _ in group]
                run_many = getattr(type(units[0]), "run_many", None)
                if run_many is not None and len(units) > 1:
                    values = await run_many(conn, chain, units)
                else:
                    values = [await unit(conn, chain) for unit in units]
                results.extend((fut, v, None) for (_, fut), v in zip(group, values,
                                                                      strict=True))
            await chain.flush()
            await tx.commit(chain.head, chain.written)
        except HeadStale as e:
            await tx.abandon()
            raise _ChainMoved from e
        except asyncpg.UniqueViolationError as e:
            await tx.abandon()
            if e.constraint_name in ("action_log_pkey", "action_log_hash_key",
                                     "merkle_nodes_pkey"):
                raise _ChainMoved from e
            raise
        except UNAVAILABLE as e:
            await tx.drop()
            raise StoreUnavailable(f"store unavailable: {type(e).__name__}: {e}") from e
        except BaseException:
            # The commit may or may not have happened: re-read the head next time.
            await tx.abandon()
            raise
        self.batches += 1
        self._after_commit(chain)
        return results

    def _after_commit(self, chain: ChainAppender) -> None:
        for hook in chain.commit_hooks:
            try:
                hook()
            except Exception:  # a metric or log line must never undo a commit
                log.exception("after-commit hook failed")
        if self.changed is not None and chain.incidents:
            try:
                self.changed(chain.incidents)
            except Exception:
                log.exception("after-commit hook failed")


def _groups(batch: list[_Item]) -> list[list[_Item]]:
    """Consecutive items whose units share a type, so mergeable ones run together."""
    groups: list[list[_Item]] = []
    for item in batch:
        if groups and type(groups[-1][0][0]) is type(item[0]):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
