"""The garbage collector's settings for a long-running daemon."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Container allocations between young-generation collections (Python's default is 700)."""


def settle() -> None:
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
