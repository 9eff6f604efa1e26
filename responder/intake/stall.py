"""A Kafka consumer that cannot move on for a reason that is not a message (the store is
down, a bug): it pauses and retries, and says so in /readyz, a metric and the log.

Poison, a message failing for its own reason, never stalls a consumer: it is dead-lettered.
A stall makes the replica not ready, except one of Kafka's own (a dead-letter send or a
commit failing): the broker is the same for every replica, and taking them all out of
service would refuse the webhooks too.
"""

from __future__ import annotations

import time

import structlog

from responder.state import DaemonState

log = structlog.get_logger("responder.kafka")
KAFKA_ERROR = "kafka_error"


class Stall:
    """Whether one consumer's topic is stuck, and why; shared through ``state.stalled``."""

    def __init__(self, state: DaemonState, topic: str) -> None:
        self._state, self._topic = state, topic
        self._since: float | None = None
        state.metrics.kafka_stalled.labels(topic).set(0)

    @property
    def is_stalled(self) -> bool:
        return self._since is not None

    def failing(self, reason: str, error: str) -> None:
        """The batch was not committed and will be read again; ``reason`` is a short code."""
        if self._since is None:
            self._since = time.monotonic()
        self._state.stalled[self._topic] = reason
        self._state.metrics.kafka_stalled.labels(self._topic).set(1)
        log.warning("kafka batch not committed; pausing, then reading it again",
                    topic=self._topic, reason=reason, error=error,
                    stalled_s=round(time.monotonic() - self._since, 1))

    def moving(self) -> None:
        """A batch was committed: the consumer is moving again."""
        if self._since is None:
            return
        log.info("kafka consumer moving again", topic=self._topic,
                 stalled_s=round(time.monotonic() - self._since, 1))
        self._since = None
        self._state.stalled.pop(self._topic, None)
        self._state.metrics.kafka_stalled.labels(self._topic).set(0)


def blocking(stalled: dict[str, str]) -> dict[str, str]:
    """The stalls that make a replica not ready."""
    return {topic: reason for topic, reason in stalled.items() if reason != KAFKA_ERROR}
