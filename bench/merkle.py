"""What the Merkle action log costs: webhook intake A/B, proof time at 10^6, bytes per record.

A/B: the build without the tree (``--baseline``, default the merge-base with main, unpacked
with ``git archive`` into a temporary directory) against this working tree, measured by
bench/run.py's level (fresh database, fresh server, warm-up, N webhooks from C senders),
interleaved A, B, A, B ... so that a busy spell of a shared machine falls on both.

Proofs: a tree of ``--records`` leaves written straight into ``merkle_nodes`` of a fresh
database, then inclusion and consistency proofs at random positions, timed one by one.

Run from the repository root: ``.venv/bin/python -m bench.merkle [--n 300 --rounds 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import run as harness
from bench.levels import Level, percentile
from responder.store import tree
from responder.store.db import create_pool, migrate
from responder.tlog.merkle import Frontier

ROOT = harness.ROOT


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[Path]:
    """The repository at ``ref``, unpacked into a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True,  # noqa: S607
                                 capture_output=True).stdout
        tar_path = Path(tmp) / "src.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            tar.extractall(Path(tmp) / "src", filter="data")
        yield Path(tmp) / "src"


@contextlib.contextmanager
def build(root: Path, data_dir: Path) -> Iterator[None]:
    """Make bench/run.py start responder from ``root`` with its data under ``data_dir``."""
    saved_root, saved_env = harness.ROOT, harness._environment

    def environment(listen: str, dsn: str, exchange_url: str) -> dict[str, str]:
        env = saved_env(listen, dsn, exchange_url)
        env.update(RESPONDER_DATA_DIR=str(data_dir), PYTHONPATH=str(root))
        return env

    harness.ROOT, harness._environment = root, environment
    try:
        yield
    finally:
        harness.ROOT, harness._environment = saved_root, saved_env


async def ab(args: argparse.Namespace) -> list[str]:
    ref = args.baseline
    results: dict[str, list[Level]] = {"without tree": [], "with tree": []}
    first = 10_000_000  # symbols never repeat across levels
    receiver = harness.Receiver()
    with baseline_tree(ref) as base, tempfile.TemporaryDirectory(prefix="bench-data-") as data, \
            tempfile.TemporaryDirectory(prefix="bench-logs-") as logs:
        async with harness.serve_receiver(receiver) as exchange_url:
            for round_no in range(args.rounds):
                for name, root in (("without tree", base), ("with tree", ROOT)):
                    print(f"round {round_no + 1}: {name} ...", file=sys.stderr, flush=True)
                    with build(root, Path(data) / f"{round_no}-{len(results[name])}"):
                        level = await harness.measure(
                            "responder", args.concurrency, args=args, receiver=receiver,
                            exchange_url=exchange_url, first=first,
                            log=Path(logs) / f"{name.replace(' ', '-')}-{round_no}.log")
                    results[name].append(level)
                    first += args.warmup + args.n
    lines = [f"A/B at concurrency {args.concurrency}, {args.n} webhooks per level,"
             f" {args.rounds} interleaved rounds; baseline {ref[:12]}", "",
             "| build | alerts/s (median) | p50 ms (median) | p99 ms (median) | notes |",
             "|---|---|---|---|---|"]
    for name, levels in results.items():
        rate = statistics.median(lv.alerts_per_s for lv in levels)
        p50 = statistics.median(percentile(lv.latencies_ms, 50) or 0.0 for lv in levels)
        p99 = statistics.median(percentile(lv.latencies_ms, 99) or 0.0 for lv in levels)
        notes = "; ".join(n.splitlines()[0] for lv in levels for n in lv.notes
                          if not n.startswith("server output"))
        lines.append(f"| {name} | {rate:.0f} | {p50:.1f} | {p99:.1f} | {notes or '-'} |")
    return lines


def _nodes(n: int, counted: list[int]) -> Iterator[tuple[int, int, bytes]]:
    """Every node of a tree of n synthetic leaves, as appends make them."""
    frontier = Frontier()
    for i in range(n):
        for (level, idx), digest in frontier.append(
                hashlib.sha256(b"\x00" + i.to_bytes(8, "big")).digest()):
            counted[0] += 1
            yield level, idx, digest


async def proofs(args: argparse.Namespace) -> list[str]:
    n = args.records
    async with harness.fresh_database(args.admin_dsn) as dsn:
        pool = await create_pool(dsn, max_size=2)
        try:
            await migrate(pool)
            started, counted = time.perf_counter(), [0]
            async with pool.acquire() as conn:
                await conn.copy_records_to_table("merkle_nodes", records=_nodes(n, counted),
                                                 columns=["level", "idx", "hash"])
                hashed_s = time.perf_counter() - started
                await conn.execute("ANALYZE merkle_nodes")
                size = await conn.fetchval("SELECT pg_total_relation_size('merkle_nodes')")
                rng = random.Random(12)  # the same positions every run
                inclusion, consistency = [], []
                for _ in range(args.samples):
                    i = rng.randrange(n)
                    t0 = time.perf_counter()
                    await tree.inclusion(conn, i, n)
                    inclusion.append((time.perf_counter() - t0) * 1000)
                    m = rng.randrange(1, n)
                    t0 = time.perf_counter()
                    await tree.consistency(conn, m, n)
                    consistency.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await tree.root(conn, n)
                root_ms = (time.perf_counter() - t0) * 1000
        finally:
            await pool.close()
    return [f"Tree of {n:,} leaves: {counted[0]:,} stored nodes, hashed and copied in"
            f" {hashed_s:.1f} s",
            f"merkle_nodes on disk, tables and index: {size / n:.0f} bytes per record",
            f"root at {n:,}: {root_ms:.2f} ms",
            f"inclusion proof at {n:,}: p50 {statistics.median(inclusion):.2f} ms,"
            f" max {max(inclusion):.2f} ms over {args.samples}",
            f"consistency proof to {n:,}: p50 {statistics.median(consistency):.2f} ms,"
            f" max {max(consistency):.2f} ms over {args.samples}"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="webhooks per level (default 300)")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2, help="interleaved A/B rounds")
    p.add_argument("--baseline", help="git ref of the build without the tree"
                   " (default: merge-base with main)")
    p.add_argument("--records", type=int, default=1_000_000, help="tree size for proofs")
    p.add_argument("--samples", type=int, default=200, help="proofs of each kind timed")
    p.add_argument("--skip-ab", action="store_true")
    p.add_argument("--skip-proofs", action="store_true")
    p.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--level-timeout-s", type=float, default=120.0)
    p.add_argument("--calls-timeout-s", type=float, default=30.0)
    args = p.parse_args()
    args.baseline = args.baseline or subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=ROOT, check=True,  # noqa: S607
        capture_output=True, text=True).stdout.strip()
    out: list[str] = []

    async def go() -> None:
        if not args.skip_proofs:
            out.extend(await proofs(args))
            out.append("")
        if not args.skip_ab:
            out.extend(await ab(args))

    try:
        asyncio.run(go())
    except harness.BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
