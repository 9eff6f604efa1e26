"""The alert as responder sees it, whatever it came through."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Status = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Alert:
    """One alert. Timestamps stay the raw strings the source sent (they carry nanoseconds)."""

    source: str
    fingerprint: str
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str = ""
    generator_url: str = ""
    group_key: str = ""
    truncated_alerts: int = 0
    receiver: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def dedup_key(self) -> str:
        """Re-deliveries (repeats, retries, HA twins) of one alert share this key.

        The labels are in it as a digest: Kafka and signed-event senders choose their own
        fingerprints, and one reused for other labels is another alert, not a repeat."""
        try:  # the same bytes as json.dumps below, faster; it refuses lone surrogates
            labels = orjson.dumps(self.labels, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            labels = json.dumps(self.labels, sort_keys=True, ensure_ascii=False,
                                separators=(",", ":")).encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(labels).hexdigest()[:16]
        return f"{self.source}|{self.fingerprint}|{self.starts_at}|{self.status}|{digest}"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "generatorURL": self.generator_url,
            "groupKey": self.group_key,
            "truncatedAlerts": self.truncated_alerts,
            "receiver": self.receiver,
        }
