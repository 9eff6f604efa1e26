"""Crash points, for tests that must kill the daemon at one exact place.

With ``RESPONDER_FAILPOINT=<name>`` in its environment the process SIGKILLs itself when it
reaches that point: no cleanup, no flush, as a power cut would. Unset, as in every
deployment, ``reach`` compares two strings and returns.
"""

from __future__ import annotations

import os
import signal

_ARMED = os.environ.get("RESPONDER_FAILPOINT", "")

KAFKA_AFTER_RECORD = "kafka.after_record"
"""Alerts of a Kafka batch are durably recorded; their offsets are not yet committed."""


def reach(name: str) -> None:
    if _ARMED and name == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
