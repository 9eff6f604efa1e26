"""Crash and hold points, for tests that must stop the daemon at one exact place.

With ``RESPONDER_FAILPOINT=<name>`` in its environment the process SIGKILLs itself when it
reaches that point: no cleanup, no flush, as a power cut would. With
``RESPONDER_FAILPOINT_HOLD=<name>`` it waits there instead, serving other signals, until
it gets SIGUSR1. Unset, as in every deployment, ``reach`` and ``hold`` compare two strings
and return.
"""

from __future__ import annotations

import asyncio
import os
import signal

import structlog

_ARMED = os.environ.get("RESPONDER_FAILPOINT", "")
_HELD = os.environ.get("RESPONDER_FAILPOINT_HOLD", "")

KAFKA_AFTER_RECORD = "kafka.after_record"
"""Alerts of a Kafka batch are durably recorded; their offsets are not yet committed."""

START_BEFORE_MIGRATE = "start.before_migrate"
"""Start-up: the store is open, its migrations not yet applied."""


def reach(name: str) -> None:
    if _ARMED and name == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)


async def hold(name: str) -> None:
    if not (_HELD and name == _HELD):
        return
    log = structlog.get_logger("responder")
    released = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, released.set)
    log.warning("failpoint: holding until SIGUSR1", failpoint=name)
    try:
        await released.wait()
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    log.warning("failpoint: released", failpoint=name)
