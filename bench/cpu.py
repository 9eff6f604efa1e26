"""Where a level's CPU went: the server, PostgreSQL, the driver, the whole machine.

Read from /proc, so these figures exist only where the bench runs on the machine it measures
(Linux). PostgreSQL's share is every local process whose name is ``postgres``: the
postmaster, its background processes and the backends, the ones that have ended included
(the postmaster reaps its backends, so their CPU moves into its children's counters). It is
the whole cluster's: another database's clients on the same server would count too, as
they do in the machine figure.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> tuple[str, list[str]] | None:
    """A process's name and the fields after it in /proc/PID/stat."""
    with contextlib.suppress(OSError, ValueError):
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        head, _, rest = text.rpartition(")")
        return head.partition("(")[2], rest.split()
    return None


def cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds one process has used so far."""
    found = _stat(pid)
    if found is None:
        return None
    with contextlib.suppress(ValueError, IndexError):
        fields = found[1]
        return (int(fields[11]) + int(fields[12])) / _ticks()
    return None


def postgres_cpu_s() -> float | None:
    """CPU seconds the local PostgreSQL processes have used, ended backends included;
    None where no process named ``postgres`` is visible."""
    total, seen = 0, False
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            found = _stat(entry.name)
            if found is None or found[0] != "postgres":
                continue
            with contextlib.suppress(ValueError, IndexError):
                fields = found[1]
                # utime, stime, and the reaped children's cutime, cstime: for the
                # postmaster those are the backends that have ended.
                total += sum(int(v) for v in fields[11:15])
                seen = True
    return total / _ticks() if seen else None


def driver_cpu_s() -> float:
    """CPU seconds of this process: the driver, its senders and the admin-call receiver."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float | None:
    """CPU seconds all processes of the machine have used (every core, idle excluded)."""
    with contextlib.suppress(OSError, ValueError):
        fields = [int(v) for v in Path("/proc/stat").read_text(encoding="utf-8")
                  .splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / _ticks()
    return None


PROBE_LOOPS = 1_000_000


def host_probe_ms() -> float:
    """CPU milliseconds this process needs for a fixed pure-Python loop (the median of
    three). The machine is shared: when its cores run slower for everyone, this figure and
    every CPU figure measured beside it rise together, so a level can be read against the
    probes taken around it."""
    taken = []
    for _ in range(3):
        started = time.process_time()
        total = 0
        for i in range(PROBE_LOOPS):
            total += i * i
        taken.append((time.process_time() - started) * 1000)
    return sorted(taken)[1]
