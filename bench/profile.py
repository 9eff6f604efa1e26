"""Sample a running server with py-spy while the bench loads it, and summarise the profile.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``). A frame's
own samples are those where it is the innermost frame; its total samples are those where it
appears anywhere in the stack, counted once per stack. Frames are counted per function
(name and file), not per line, so a function's samples are not spread over its lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

RATE_HZ = 200
STOP_TIMEOUT_S = 30.0


class ProfilerError(Exception):
    """py-spy is missing, or could not attach to the server."""


def command(pid: int, out: Path) -> list[str]:
    spy = shutil.which("py-spy") or str(Path(__file__).resolve().parent.parent
                                         / ".venv" / "bin" / "py-spy")
    if not Path(spy).exists():
        raise ProfilerError("py-spy not found: pip install py-spy (it is in the dev extra)")
    # Not --nonblocking: reading a running target's stacks tears a quarter of them, and
    # the torn ones pile onto frames such as the socket write (22% of samples torn, 9%
    # paused). Pausing costs the target a little time per sample, not the proportions.
    return [spy, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw",
            "--output", str(out)]


@contextlib.asynccontextmanager
async def recording(pid: int, out: Path, log: Path) -> AsyncIterator[list[str]]:
    """Record the process for as long as the block runs; yields the command used."""
    cmd = command(pid, out)
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield cmd
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    _check_written(out, log)


def _check_written(out: Path, log: Path) -> None:
    if not out.exists():
        raise ProfilerError(f"py-spy wrote no profile: {log.read_text(errors='replace')[-500:]}")


def load(path: Path) -> Profile:
    """Parse a profile that ``recording`` wrote."""
    return parse(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Profile:
    samples: int
    own: Counter[str]
    total: Counter[str]


def parse(text: str) -> Profile:
    """Own and total samples per frame, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return Profile(samples, own, total)


def _function(frame: str) -> str:
    """``func (file.py:12)`` as ``func (file.py)``."""
    head, colon, line = frame.rstrip(")").rpartition(":")
    return f"{head})" if colon and line.isdigit() else frame


def _short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py)`` as ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    for marker in ("site-packages/", "/responder/", "/lib/python3"):
        if marker in where:
            head = "responder/" if marker == "/responder/" else ""
            where = head + where.split(marker, 1)[1]
            break
    return f"{name} ({where}" if where else name


def shown(cmd: list[str], root: Path) -> str:
    """The command as one would type it from the repository root, without this run's pid
    and temporary path."""
    out = []
    for i, part in enumerate(cmd):
        before = cmd[i - 1] if i else ""
        if before == "--pid":
            out.append("PID")
        elif before == "--output":
            out.append("profile.txt")
        elif i == 0:
            out.append(os.path.relpath(part, root) if part.startswith(str(root)) else "py-spy")
        else:
            out.append(part)
    return shlex.join(out)


def _ours(frame: str) -> bool:
    """A frame of responder's own code, other than the command line that starts the loop."""
    where = frame.partition(" (")[2]
    ours = where.startswith("responder/") or "/responder/" in where
    return ours and "responder/cli/" not in where and not where.rsplit("/", 1)[-1].startswith(
        ("cli.py", "__main__.py"))


def render(profile: Profile, top: int = 15) -> list[str]:
    """Two tables of markdown: the top frames by own samples, and responder's own functions
    by total samples (the event loop and the runner frames above it are in every stack)."""
    if not profile.samples:
        return ["(no samples)"]
    out = []
    ours = Counter({f: n for f, n in profile.total.items() if _ours(f)})
    for title, counter in (("own time, any code", profile.own),
                           ("total time, responder's own functions", ours)):
        out += [f"Top {top} frames by {title} ({profile.samples:,} samples):", "",
                "| # | own % | total % | frame |", "|--:|--:|--:|---|"]
        for i, (frame, _) in enumerate(counter.most_common(top), 1):
            out.append(f"| {i} | {100 * profile.own[frame] / profile.samples:.1f}"
                       f" | {100 * profile.total[frame] / profile.samples:.1f}"
                       f" | `{_short(frame)}` |")
        out.append("")
    return out
