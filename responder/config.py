"""Settings: one frozen object, parsed once in main() and passed in.

Sources, highest priority first: environment (prefix ``RESPONDER_``), the optional TOML
config file, then defaults. Token lists come from the environment (comma-separated), the
config file, or a file with one token per line.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from responder.auth import Role, token_sha256
from responder.errors import ConfigError
from responder.production import production_problem

DEMO_PRINCIPAL_TOKENS = ("demo-viewer-token", "demo-operator-token", "demo-admin-token")
"""The tokens behind the demo principals, whose hashes production refuses too."""

TokenList = Annotated[list[SecretStr], NoDecode]
PathList = Annotated[list[Path], NoDecode]
NameList = Annotated[list[str], NoDecode]


def _split_tokens(value: Any) -> Any:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


def _read_token_file(path: Path | None, setting: str) -> list[SecretStr]:
    if path is None:
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ValueError(f"RESPONDER_{setting.upper()}: cannot read {path}: {e.strerror}") from e
    return [SecretStr(line.strip()) for line in lines if line.strip() and not line.startswith("#")]


class PrincipalSpec(BaseModel):
    """A caller of the API: a name, a role and the SHA-256 of its token (never the token)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$")
    role: Role
    token_sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


def _read_principals(path: Path | None) -> list[PrincipalSpec]:
    if path is None:
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"RESPONDER_PRINCIPALS_FILE: cannot read {path}: {e}") from e
    try:
        return [PrincipalSpec.model_validate(p) for p in data.get("principals", [])]
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"RESPONDER_PRINCIPALS_FILE: {path}: {err['msg']}") from e


class EventSource(BaseModel):
    """A service allowed to post signed events, with its current and previous secrets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    secrets: list[SecretStr] = Field(min_length=1)


class SinkSpec(BaseModel):
    """Where bundles and pages are delivered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    kind: Literal["file", "webhook", "slack", "kafka"]
    url: str | None = Field(default=None, pattern=r"^https?://")
    dir: Path | None = None
    bootstrap: str | None = None
    topic: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,200}$")
    hmac_secret: SecretStr | None = None
    bundles: bool = True
    pages: bool = False
    # Retried with backoff (doubling, capped at max_backoff_s) for retry_for_s, 24 h by
    # default: an ordinary outage of a sink must not lose evidence. Then the row is dead
    # (logged, counted, alerted on) until `responder outbox retry` sends it again.
    retry_for_s: float = Field(default=86_400.0, gt=0, le=30 * 86_400.0)
    max_backoff_s: float = Field(default=300.0, gt=0, le=3_600.0)
    max_attempts: int | None = Field(default=None, gt=0)  # an optional cap as well

    @model_validator(mode="after")
    def _where(self) -> SinkSpec:
        if self.kind == "file" and self.dir is None:
            raise ValueError(f"sink {self.name}: a file sink needs dir")
        if self.kind == "kafka" and (self.bootstrap is None or self.topic is None):
            raise ValueError(f"sink {self.name}: a kafka sink needs bootstrap and topic")
        if self.kind in ("webhook", "slack") and self.url is None:
            raise ValueError(f"sink {self.name}: a {self.kind} sink needs url")
        return self


class Settings(BaseSettings):
    """Everything the daemon can be told, validated at start."""

    model_config = SettingsConfigDict(env_prefix="RESPONDER_", frozen=True, extra="forbid")

    env: Literal["development", "production"] = "development"
    listen: str = "127.0.0.1:9095"
    database_url: SecretStr | None = None
    data_dir: Path = Path(".responder")
    rules_dir: Path = Path("rules")
    # Rule files that name a pack load only when it is listed here ("all": every pack).
    rule_packs: NameList = Field(default_factory=list)
    webhook_tokens: TokenList = Field(default_factory=list)
    webhook_tokens_file: Path | None = None
    viewer_tokens: TokenList = Field(default_factory=list)
    viewer_tokens_file: Path | None = None
    principals: list[PrincipalSpec] = Field(default_factory=list)
    principals_file: Path | None = None
    max_body_bytes: int = Field(default=1_048_576, gt=0, le=64 * 1_048_576)
    # A request's headers must arrive within this (also the idle keep-alive timeout), and
    # connections over the cap are answered 503: slow clients cannot hold every descriptor.
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    http_max_connections: int = Field(default=512, gt=0)
    step_deadline_s: float = Field(default=30.0, gt=0)
    shutdown_deadline_s: float = Field(default=10.0, gt=0)
    sweep_interval_s: float = Field(default=5.0, gt=0)
    release_approval_ttl_s: float = Field(default=900.0, gt=0)
    event_sources: list[EventSource] = Field(default_factory=list)
    sinks: list[SinkSpec] = Field(default_factory=list)
    kafka_bootstrap: str | None = None
    kafka_alerts_topic: str = "responder.alerts"
    kafka_dlq_topic: str = "responder.alerts.dlq"
    kafka_group: str = "responder"
    kafka_max_message_bytes: int = Field(default=1_048_576, gt=0)
    # Metric samples for metric rules; "" turns the metrics consumer off.
    kafka_metrics_topic: str = "responder.metrics"
    kafka_metrics_dlq_topic: str = "responder.metrics.dlq"
    kafka_metrics_group: str | None = None  # default: "<kafka_group>-metrics"
    metrics_max_series: int = Field(default=100_000, gt=0)
    metrics_stale_after_s: float = Field(default=300.0, gt=0)
    metrics_max_future_s: float = Field(default=300.0, gt=0)
    prometheus_url: str | None = Field(default=None, pattern=r"^https?://")
    public_url: str | None = None
    event_window_s: float = Field(default=300.0, gt=0)
    rules_strict: bool = False
    rules_public_keys: PathList = Field(default_factory=list)
    storm_window_s: float = Field(default=60.0, gt=0)
    storm_max_incidents: int = Field(default=200, gt=0)
    read_back_deadline_s: float = Field(default=3.0, gt=0)
    reconcile_interval_s: float = Field(default=30.0, ge=0)
    # Off by default: a SEV1 still firing after an outage has an old startsAt too.
    max_alert_age_s: float | None = Field(default=None, gt=0)
    intake_queue_max: int = Field(default=10_000, gt=0)
    # Replicas (HA): who this process is in step claims, how long a claim lasts without
    # renewal, and how often a leader-only loop checks that it still holds its lock.
    replica_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:@-]{1,128}$")
    """Unset: a name kept in the data directory (store/identity.py)."""
    step_lease_s: float = Field(default=10.0, ge=0.5)
    leader_check_s: float = Field(default=2.0, gt=0)
    manual_wait_s: float = Field(default=5.0, ge=0, le=60)
    """How long a person's change waits for automation in flight on the same key (any
    replica) before it is refused with 409 key_busy."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The operator web page's session cookies are signed with this; unset, each process makes
    # its own, so replicas behind one URL need a shared value.
    web_session_secret: SecretStr | None = None
    web_session_ttl_s: float = Field(default=8 * 3600.0, gt=0, le=7 * 86400.0)
    # Signed checkpoints of the action log's Merkle tree (docs/audit-log.md). Unset outside
    # production: a key made under data_dir at first start. Replicas must share one key.
    audit_signing_key_file: Path | None = None
    audit_origin: str = Field(default="responder/action-log", pattern=r"^[^\s+]{1,200}$")
    checkpoint_interval_s: float = Field(default=300.0, ge=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    _split_webhook = field_validator("webhook_tokens", "viewer_tokens", "rules_public_keys",
                                     "rule_packs", mode="before")(_split_tokens)

    @field_validator("database_url", "webhook_tokens_file", "viewer_tokens_file",
                     "audit_signing_key_file",
                     "principals_file", "max_alert_age_s", "prometheus_url", "kafka_bootstrap",
                     "web_session_secret", "kafka_metrics_group", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("web_session_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("at least 32 characters (for example: openssl rand -hex 32)")
        return value

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("expected HOST:PORT, for example 127.0.0.1:9095")
        return value

    @model_validator(mode="after")
    def _merge_token_files(self) -> Settings:
        merged = {
            "webhook_tokens": self.webhook_tokens
            + _read_token_file(self.webhook_tokens_file, "webhook_tokens_file"),
            "viewer_tokens": self.viewer_tokens
            + _read_token_file(self.viewer_tokens_file, "viewer_tokens_file"),
        }
        if self.rules_strict and not self.rules_public_keys:
            raise ValueError("RESPONDER_RULES_STRICT: strict mode needs"
                             " RESPONDER_RULES_PUBLIC_KEYS")
        for key in self.rules_public_keys:
            if not key.is_file():
                raise ValueError(f"RESPONDER_RULES_PUBLIC_KEYS: no such file {key}")
        object.__setattr__(self, "principals",
                           self.principals + _read_principals(self.principals_file))
        names = [p.name for p in self.principals]
        if len(set(names)) != len(names):
            raise ValueError("RESPONDER_PRINCIPALS: principal names must be unique")
        for name, tokens in merged.items():
            object.__setattr__(self, name, tokens)
        if self.env == "production":
            demo_hashes = {token_sha256(t) for t in DEMO_PRINCIPAL_TOKENS}
            if (problem := production_problem(self, demo_hashes)) is not None:
                raise ValueError(problem)
        return self

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def rules_keys(self) -> list[Path] | None:
        """The public keys rule tables must verify against, or None outside strict mode."""
        return list(self.rules_public_keys) if self.rules_strict else None

    def secret_values(self) -> list[str]:
        """Every configured secret, so the log redactor can mask it wherever it appears."""
        secrets = [t.get_secret_value() for t in (*self.webhook_tokens, *self.viewer_tokens)]
        secrets += [s.get_secret_value() for source in self.event_sources for s in source.secrets]
        secrets += [s.hmac_secret.get_secret_value() for s in self.sinks if s.hmac_secret]
        if self.web_session_secret is not None:
            secrets.append(self.web_session_secret.get_secret_value())
        if self.database_url is not None:
            secrets.append(self.database_url.get_secret_value())
        return [s for s in secrets if s]


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Parse settings, turning any validation failure into one line that names the setting."""
    config_file = config_file or _env_path("RESPONDER_CONFIG_FILE")
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"RESPONDER_CONFIG_FILE: no such file {config_file}")

        class FileSettings(Settings):
            model_config = SettingsConfigDict(toml_file=config_file)

        settings_cls = FileSettings
    try:
        return settings_cls(**overrides)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"RESPONDER_{loc.upper()}: {msg}" if loc else msg) from e


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
