"""How the daemon's process runs: its event loop, and the collector's settings."""

from __future__ import annotations

import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")

YOUNG_THRESHOLD = 20_000
"""Container allocations between young-generation collections (Python's default is 700)."""


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the daemon on uvloop.

    Every alert costs a dozen socket round trips (the webhook, the store, the admin call
    and its read-back) and hundreds of callbacks; uvloop does that part in C. The daemon
    uses nothing uvloop lacks, and the tests that start it as a process run it this way.
    """
    return uvloop.run(main)


def settle_heap() -> None:
    """Once started, keep the collector off what start-up built.

    The rule table, the parsed settings and every imported module live as long as the
    process. Without this, each full collection walks all of them again, and at the
    default thresholds collections took about a twentieth of the daemon's CPU per alert
    (``perf report --sort sym`` on the bench's daemon: ``gc_collect_main`` and the visits
    it makes). Frozen objects are never collected, which is right for these.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


