"""The writer's cache of committed tree nodes: it answers proofs as the store does, learns only
committed nodes, and two writers on one log each still answer every node right."""

from __future__ import annotations

import asyncio

import asyncpg

from responder.store import tree
from responder.store.actionlog import ChainAppender, Entry
from responder.store.types import Conn
from responder.store.writer import Writer
from responder.tlog.merkle import Frontier, keys_for, leaf_hash, range_keys


def test_the_cache_keeps_high_nodes_and_drops_the_oldest_low_ones() -> None:
    cache = tree.NodeCache()
    frontier = Frontier()
    made = [node for i in range(cache.MAX_LOW + 1000)
            for node in frontier.append(leaf_hash(str(i).encode()))]
    cache.add(made)
    assert cache.get((0, 0)) is None  # the oldest leaves went first
    assert cache.get((0, cache.MAX_LOW + 999)) is not None
    assert cache.get((cache.HIGH_LEVEL, 0)) == dict(made)[(cache.HIGH_LEVEL, 0)]
    assert cache.size == cache.MAX_LOW + 1000


async def test_nodes_from_the_cache_are_the_stored_ones(pool: asyncpg.Pool) -> None:
    """Two writers append to one log; each one's cached answer for every node of the tree is
    what merkle_nodes holds, and a node is read from the store only once per writer."""
    writers = [Writer(pool, lambda: "0" * 64) for _ in range(2)]
    tasks = [asyncio.create_task(w.run()) for w in writers]

    def unit(i: int):  # type: ignore[no-untyped-def]
        async def run(conn: Conn, chain: ChainAppender) -> None:
            chain.add(Entry("test", detail={"i": i}))
        return run

    for i in range(40):
        await writers[i % 2].submit(unit(i))
    size = 40
    keys = keys_for([(0, size)]) | {k for i in range(size) for k in range_keys(i, size)}
    async with pool.acquire() as conn:
        stored = await tree.nodes(conn, keys)
    for w in writers:
        cache = w._tx.nodes  # the writer's own cache is what is under test
        async with pool.acquire() as conn:
            assert await tree.nodes(conn, keys, cache) == stored
        reads = 0

        class Counting:
            def __init__(self, conn: Conn) -> None:
                self.conn = conn

            async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
                nonlocal reads
                reads += 1
                return await self.conn.fetch(query, *args)

        async with pool.acquire() as conn:
            counted = Counting(conn)
            assert await tree.nodes(counted, keys, cache) == stored  # type: ignore[arg-type]
        assert reads == 0  # all of them learnt by now
        w.stop()
    await asyncio.gather(*tasks)


def test_the_cache_stays_bounded_and_keeps_the_newest_as_nodes_arrive_a_few_at_a_time() -> None:
    """Fed as the writer feeds it, a batch at a time, the cache never holds more than twice
    MAX_LOW low nodes, and always the newest MAX_LOW of them."""
    cache = tree.NodeCache()
    frontier = Frontier()
    low: list[tuple[int, int]] = []
    for i in range(3 * cache.MAX_LOW):
        made = frontier.append(leaf_hash(str(i).encode()))
        cache.add(made)
        low += [k for k, _ in made if k[0] < cache.HIGH_LEVEL]
        assert len(cache._low) + len(cache._older) <= 2 * cache.MAX_LOW
    assert all(cache.get(k) is not None for k in low[-cache.MAX_LOW:])
    assert cache.size == 3 * cache.MAX_LOW
