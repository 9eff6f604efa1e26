"""Group commit: one task writes queued units of work in shared transactions.

Callers submit a unit (an async function of a connection and the chain appender) and wait
for its result, which is only delivered after the transaction holding it has committed.
Batching turns many small durable writes into one fsync, and a single writer keeps the
action log's hash chain uncontended inside this process. Each unit runs in a savepoint,
so one failing unit does not take its neighbours down with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog

from responder.errors import StoreUnavailable
from responder.store.actionlog import ChainAppender
from responder.store.db import UNAVAILABLE, Conn, store_errors

T = TypeVar("T")
Unit = Callable[[Conn, ChainAppender], Awaitable[T]]
_Item = tuple[Unit[Any], "asyncio.Future[Any]"]

log = structlog.get_logger("responder.store")


class Writer:
    """Serialises durable writes through batched transactions."""

    def __init__(self, pool: asyncpg.Pool, rules_hash: Callable[[], str], *,
                 max_pending: int = 10_000, max_batch: int = 256) -> None:
        self._pool = pool
        self._rules_hash = rules_hash
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=max_pending)
        self._max_batch = max_batch
        self.batches = 0

    async def submit(self, unit: Unit[T]) -> T:
        """Run ``unit`` in a committed transaction; StoreUnavailable if it cannot be."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((unit, fut))
        except asyncio.QueueFull:
            raise StoreUnavailable("write backlog is full") from None
        return await fut

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        """Write batches until stop() has been called and the queue is drained."""
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            stop_after = False
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop_after = True
                    break
                batch.append(item)
            await self._commit(batch)
            if stop_after:
                return

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
                return

    async def _commit(self, batch: list[_Item]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            async with store_errors(), self._pool.acquire() as conn, conn.transaction():
                appender = ChainAppender(conn, self._rules_hash())
                for unit, fut in batch:
                    head = appender.head
                    try:
                        async with conn.transaction():
                            result = await unit(conn, appender)
                    except UNAVAILABLE:
                        raise
                    except Exception as e:  # one unit's failure must not fail the batch
                        appender.rollback_to(head)
                        log.exception("write unit failed", error=f"{type(e).__name__}: {e}")
                        outcomes.append((fut, None, e))
                    else:
                        outcomes.append((fut, result, None))
            self.batches += 1
        except Exception as e:
            log.warning("write batch failed", error=str(e), units=len(batch))
            failure = e if isinstance(e, StoreUnavailable) else StoreUnavailable(str(e))
            outcomes = [(fut, None, failure) for _, fut in batch]
        for fut, result, error in outcomes:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)
