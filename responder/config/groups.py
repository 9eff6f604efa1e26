"""The settings of each concern, as the code reads them (``settings.kafka.bootstrap``).

Users keep writing the flat names (``RESPONDER_KAFKA_BOOTSTRAP``, ``kafka_bootstrap`` in the
TOML file): a group's flat name is its ``prefix`` and the field's name, unless ``renamed``
spells it out. Values are checked once, on the flat names (config/source.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from responder.config.specs import (
    EventSource,
    NameList,
    PathList,
    PrincipalSpec,
    SinkSpec,
    TokenList,
)


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: ClassVar[str] = ""
    renamed: ClassVar[dict[str, str]] = {}
    """Fields whose flat name is not ``prefix + name``."""

    @classmethod
    def flat_names(cls) -> dict[str, str]:
        """Each field's name here, by the flat name users write."""
        return {cls.renamed.get(name, cls.prefix + name): name for name in cls.model_fields}


class WebSettings(Group):
    """The HTTP server: webhooks, API, operator page."""

    renamed: ClassVar[dict[str, str]] = {"session_secret": "web_session_secret",
                                         "session_ttl_s": "web_session_ttl_s"}

    listen: str = "127.0.0.1:9095"
    max_body_bytes: int = Field(default=1_048_576, gt=0, le=64 * 1_048_576)
    # A request's headers must arrive within this (also the idle keep-alive timeout), and
    # connections over the cap are answered 503: slow clients cannot hold every descriptor.
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    http_max_connections: int = Field(default=512, gt=0)
    public_url: str | None = None
    # The operator web page's session cookies are signed with this; unset, each process makes
    # its own, so replicas behind one URL need a shared value.
    session_secret: SecretStr | None = None
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0, le=7 * 86400.0)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class AccessSettings(Group):
    """Who may call: webhook and viewer tokens, principals, signed-event sources."""

    webhook_tokens: TokenList = Field(default_factory=list)
    webhook_tokens_file: Path | None = None
    viewer_tokens: TokenList = Field(default_factory=list)
    viewer_tokens_file: Path | None = None
    principals: list[PrincipalSpec] = Field(default_factory=list)
    principals_file: Path | None = None
    event_sources: list[EventSource] = Field(default_factory=list)


class IntakeSettings(Group):
    renamed: ClassVar[dict[str, str]] = {"queue_max": "intake_queue_max"}

    # Off by default: a SEV1 still firing after an outage has an old startsAt too.
    max_alert_age_s: float | None = Field(default=None, gt=0)
    queue_max: int = Field(default=10_000, gt=0)
    event_window_s: float = Field(default=300.0, gt=0)


class KafkaSettings(Group):
    prefix: ClassVar[str] = "kafka_"

    bootstrap: str | None = None
    alerts_topic: str = "responder.alerts"
    dlq_topic: str = "responder.alerts.dlq"
    group: str = "responder"
    max_message_bytes: int = Field(default=1_048_576, gt=0)
    # How long the broker may hold a fetch for data. The client keeps one fetch in flight
    # per broker, and a partition whose records it still holds is left out of it: a message
    # arriving there then waits for that fetch to end. With aiokafka's default (500 ms) an
    # alert on one partition of four took 203 ms to its containment call, with 20 about 12
    # (bench/kafka_latency.py).
    fetch_max_wait_ms: int = Field(default=20, ge=1, le=10_000)
    # Metric samples for metric rules; "" turns the metrics consumer off.
    metrics_topic: str = "responder.metrics"
    metrics_dlq_topic: str = "responder.metrics.dlq"
    metrics_group: str | None = None  # default: "<kafka_group>-metrics"


class MetricRuleSettings(Group):
    """The series metric rules keep in memory."""

    prefix: ClassVar[str] = "metrics_"

    max_series: int = Field(default=100_000, gt=0)
    stale_after_s: float = Field(default=300.0, gt=0)
    max_future_s: float = Field(default=300.0, gt=0)


class RuleSettings(Group):
    prefix: ClassVar[str] = "rules_"
    renamed: ClassVar[dict[str, str]] = {"packs": "rule_packs"}

    dir: Path = Path("rules")
    # Rule files that name a pack load only when it is listed here ("all": every pack).
    packs: NameList = Field(default_factory=list)
    strict: bool = False
    public_keys: PathList = Field(default_factory=list)

    @property
    def verify_keys(self) -> list[Path] | None:
        """The public keys rule tables must verify against, or None outside strict mode."""
        return list(self.public_keys) if self.strict else None


class StormSettings(Group):
    """The blast-radius guard."""

    prefix: ClassVar[str] = "storm_"

    window_s: float = Field(default=60.0, gt=0)
    max_incidents: int = Field(default=200, gt=0)


class StepSettings(Group):
    """Running steps: deadlines, claims (leases) across replicas, repair and manual waits."""

    renamed: ClassVar[dict[str, str]] = {"deadline_s": "step_deadline_s",
                                         "lease_s": "step_lease_s"}

    deadline_s: float = Field(default=30.0, gt=0)
    sweep_interval_s: float = Field(default=5.0, gt=0)
    read_back_deadline_s: float = Field(default=3.0, gt=0)
    reconcile_interval_s: float = Field(default=30.0, ge=0)
    # Replicas (HA): who this process is in step claims, how long a claim lasts without
    # renewal, and how often a leader-only loop checks that it still holds its lock.
    replica_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:@-]{1,128}$")
    """Unset: a name kept in the data directory (store/identity.py)."""
    lease_s: float = Field(default=10.0, ge=0.5)
    leader_check_s: float = Field(default=2.0, gt=0)
    manual_wait_s: float = Field(default=5.0, ge=0, le=60)
    """How long a person's change waits for automation in flight on the same key (any
    replica) before it is refused with 409 key_busy."""


class EvidenceSettings(Group):
    sinks: list[SinkSpec] = Field(default_factory=list)
    prometheus_url: str | None = Field(default=None, pattern=r"^https?://")


class AuditSettings(Group):
    """Signed checkpoints of the action log's Merkle tree (docs/audit-log.md)."""

    prefix: ClassVar[str] = "audit_"
    renamed: ClassVar[dict[str, str]] = {"checkpoint_interval_s": "checkpoint_interval_s"}

    # Unset outside production: a key made under data_dir at first start. Replicas must
    # share one key.
    signing_key_file: Path | None = None
    origin: str = Field(default="responder/action-log", pattern=r"^[^\s+]{1,200}$")
    checkpoint_interval_s: float = Field(default=300.0, ge=0)
