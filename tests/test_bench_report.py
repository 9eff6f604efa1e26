"""The bench's report arithmetic: profile counting and issue 15's ratios (no timing here)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from bench import cpu, profile, targets

FRAMES = st.sampled_from(["run (a.py:1)", "run (a.py:2)", "step (responder/b.py:7)",
                          "write (asyncio/c.py:9)"])
STACKS = st.lists(st.tuples(st.lists(FRAMES, min_size=1, max_size=6),
                            st.integers(min_value=1, max_value=50)), max_size=20)


@given(STACKS)
def test_profile_counts_each_function_once_per_stack(stacks: list[tuple[list[str], int]]) -> None:
    """Own samples add up to all samples, and no function's total exceeds them, even when
    it recurses or appears at several lines of one stack."""
    text = "".join(f"{';'.join(frames)} {count}\n" for frames, count in stacks)
    found = profile.parse(text)
    assert found.samples == sum(count for _, count in stacks)
    assert sum(found.own.values()) == found.samples
    for frame, total in found.total.items():
        assert found.own[frame] <= total <= found.samples
        assert ":" not in frame.rpartition(" (")[2]


def test_profile_lists_responder_functions_by_total_time() -> None:
    """The second table keeps responder's own functions, however py-spy spells the path."""
    text = ("main (responder/cli.py:3);step (responder/engine/x.py:5);"
            "write (/venv/lib/python3.11/asyncio/t.py:9) 3\n"
            "main (responder/cli.py:3);plan (/src/responder/engine/y.py:8) 1\n")
    lines = profile.render(profile.parse(text), top=5)
    ours = lines[lines.index(next(x for x in lines if "responder's own" in x)):]
    assert any("step (responder/engine/x.py)" in x for x in ours)
    assert any("plan (responder/engine/y.py)" in x for x in ours)
    assert not any("cli.py" in x or "asyncio" in x for x in ours)


@dataclass(frozen=True)
class Fig:
    system: str
    concurrency: int
    calls_per_s: float
    p50_ms: float | None
    machine_ms_per_alert: float | None


def test_targets_mark_each_ratio_against_its_own_peer() -> None:
    """Throughput ratios are against the floor at 8 and 32 and the peer everywhere; the p50
    ratio to the floor only at concurrency 1."""
    rows = [Fig("floor", 1, 500, 1.5, 2.0), Fig("dbos", 1, 100, 12.0, 9.0),
            Fig("responder", 1, 300, 2.9, 4.0),
            Fig("floor", 8, 1000, 5.0, 1.5), Fig("dbos", 8, 150, 100.0, 9.0),
            Fig("responder", 8, 590, 30.0, 2.1)]
    lines = targets.check(rows)
    by_start = {line.split(":")[0]: line.rsplit(": ", 1)[1] for line in lines}
    assert by_start["- machine CPU per contained alert at concurrency 8 <= 2.0 ms"] == "MISSED"
    assert by_start["- contained/s at concurrency 8 >= 0.6x floor"] == "MISSED"
    assert by_start["- call p50 at concurrency 1 <= 2.0x floor"] == "met"
    assert by_start["- contained/s at concurrency 1 >= 3x DBOS peer"] == "met"
    assert by_start["- call p50 at concurrency 8 < 0.5x DBOS peer"] == "met"
    assert not any("concurrency 32" in line for line in lines)
    table = targets.ratio_table(rows)
    assert "| 1 | 500/s, 1.5 | 100/s, 12.0 | 300/s, 2.9 | 0.60x | 1.93x | 3.00x" in table[2]


def test_postgresql_cpu_counts_the_backends_that_have_ended() -> None:
    """A backend's CPU stays in the figure after it exits: the postmaster reaps it, so the
    figure does not drop when a level's connections close. (The suite runs beside a local
    PostgreSQL, so there is always one to find.)"""
    import asyncio

    import asyncpg

    from tests.conftest import ADMIN_DSN

    async def busy_backend() -> None:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            await conn.fetchval("SELECT count(*) FROM generate_series(1, 3000000)")
        finally:
            await conn.close()

    before = cpu.postgres_cpu_s()
    assert before is not None
    asyncio.run(busy_backend())
    after = cpu.postgres_cpu_s()
    assert after is not None and after > before
