"""The writer's connection: transactions that hold the action log's append lock, and the
head the writer keeps between them.

While no other writer appends, a transaction begins, takes the lock and checks the head in
one round trip (``begin_at``); after one has, the long way (begin, lock, read the head) for
the next few transactions, so that replicas appending in turn do not pay a rollback each.
The connection never carries on a transaction it did not begin.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
import structlog

from responder.store import tree
from responder.store.actionlog import Head, begin_at, lock_head, read_head
from responder.store.db import UNAVAILABLE
from responder.store.types import Conn, Pool
from responder.tlog.merkle import NodeKey

SLOW_AFTER_MOVE = 16
"""Transactions that begin the long way after another writer moved the head."""

log = structlog.get_logger("responder.store")


class AppendTransactions:
    """One connection, one transaction at a time, each holding the append lock."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._conn: asyncpg.pool.PoolConnectionProxy | None = None
        self._head: Head | None = None
        self.nodes = tree.NodeCache()
        """Tree nodes this writer wrote or read, for the next appends."""
        self._slow = 0

    @property
    def head(self) -> Head:
        """The head the transaction begun last continues from."""
        assert self._head is not None  # begin() read it
        return self._head

    async def connection(self) -> Conn:
        if self._conn is None:
            self._conn = await self._pool.acquire()
            # The writer runs a few statements over and over: plan them once.
            await self._conn.execute("SET plan_cache_mode = force_generic_plan")
            self._head = None
        return self._conn

    async def begin(self) -> Conn:
        """The connection, in a new transaction holding the append lock, ``head`` current."""
        conn = await self.connection()
        if conn.is_in_transaction():
            await self.drop()
            conn = await self.connection()
        if self._head is not None and self._slow == 0:
            if await begin_at(conn, self._head):
                return conn
            self._slow = SLOW_AFTER_MOVE
        self._slow = max(0, self._slow - 1)
        await conn.execute("BEGIN")
        seq = await lock_head(conn)
        if self._head is None or self._head.seq != seq:
            self._head = await read_head(conn)
            if self._head.frontier.size < self.nodes.size:
                self.nodes.clear()  # a shorter log than we wrote: not ours any more
            self.nodes.add(self._head.frontier.nodes)
        return conn

    async def commit(self, head: Head, written: Iterable[tuple[NodeKey, bytes]]) -> None:
        """Commit; the log now ends at ``head``, with the tree nodes ``written``."""
        assert self._conn is not None
        await self._conn.execute("COMMIT")
        self._head = head
        self.nodes.add(written)

    async def abandon(self) -> None:
        """Roll back what was begun, the head unknown; drop the connection if need be."""
        self._head = None
        conn = self._conn
        if conn is None or not conn.is_in_transaction():
            return
        try:
            await conn.execute("ROLLBACK")
        except Exception:
            log.warning("the writer could not roll back; dropping its connection")
            await self.drop()

    async def drop(self) -> None:
        """Give the connection back (its reset rolls back what it was in); the head is
        read again on the next one."""
        conn, self._conn = self._conn, None
        self._head = None
        if conn is not None:
            try:
                await self._pool.release(conn, timeout=5)
            except (*UNAVAILABLE, asyncpg.PostgresError):
                log.warning("writer connection could not be released cleanly")
