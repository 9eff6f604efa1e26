"""Settings: one frozen object, parsed once in main() and passed in.

Sources, highest priority first: environment (prefix ``RESPONDER_``), the optional TOML
config file, then defaults. Token lists come from the environment (comma-separated), the
config file, or a file with one token per line.

The code reads them by concern (``settings.kafka.bootstrap``, config/groups.py); users write
the flat names (``RESPONDER_KAFKA_BOOTSTRAP``), which config/source.py reads and checks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from responder.auth import token_sha256
from responder.config.groups import (
    AccessSettings,
    AuditSettings,
    EvidenceSettings,
    IntakeSettings,
    KafkaSettings,
    MetricRuleSettings,
    RuleSettings,
    StepSettings,
    StormSettings,
    WebSettings,
)
from responder.config.source import flat_source, nest
from responder.config.specs import (
    EventSource,
    PrincipalSpec,
    SinkSpec,
    read_principals,
    read_token_file,
)
from responder.errors import ConfigError
from responder.production import NamedSecrets, production_problem

__all__ = ["DEMO_PRINCIPAL_TOKENS", "EventSource", "PrincipalSpec", "Settings", "SinkSpec",
           "load_settings"]

DEMO_PRINCIPAL_TOKENS = ("demo-viewer-token", "demo-operator-token", "demo-admin-token")
"""The tokens behind the demo principals, whose hashes production refuses too."""


class Settings(BaseModel):
    """Everything the daemon can be told, validated at start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: Literal["development", "production"] = "development"
    database_url: SecretStr | None = None
    data_dir: Path = Path(".responder")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_deadline_s: float = Field(default=10.0, gt=0)
    release_approval_ttl_s: float = Field(default=900.0, gt=0)
    web: WebSettings = Field(default_factory=WebSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    metric_rules: MetricRuleSettings = Field(default_factory=MetricRuleSettings)
    rules: RuleSettings = Field(default_factory=RuleSettings)
    storm: StormSettings = Field(default_factory=StormSettings)
    steps: StepSettings = Field(default_factory=StepSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @model_validator(mode="after")
    def _merge_token_files(self) -> Settings:
        access = self.access
        merged = {
            "webhook_tokens": access.webhook_tokens
            + read_token_file(access.webhook_tokens_file, "webhook_tokens_file"),
            "viewer_tokens": access.viewer_tokens
            + read_token_file(access.viewer_tokens_file, "viewer_tokens_file"),
        }
        if self.rules.strict and not self.rules.public_keys:
            raise ValueError("RESPONDER_RULES_STRICT: strict mode needs"
                             " RESPONDER_RULES_PUBLIC_KEYS")
        for key in self.rules.public_keys:
            if not key.is_file():
                raise ValueError(f"RESPONDER_RULES_PUBLIC_KEYS: no such file {key}")
        object.__setattr__(access, "principals",
                           access.principals + read_principals(access.principals_file))
        names = [p.name for p in access.principals]
        if len(set(names)) != len(names):
            raise ValueError("RESPONDER_PRINCIPALS: principal names must be unique")
        for name, tokens in merged.items():
            object.__setattr__(access, name, tokens)
        if self.env == "production":
            demo_hashes = {token_sha256(t) for t in DEMO_PRINCIPAL_TOKENS}
            problem = production_problem(self.named_secrets(),
                                         [p.token_sha256 for p in access.principals],
                                         demo_hashes)
            if problem is not None:
                raise ValueError(problem)
        return self

    def named_secrets(self) -> NamedSecrets:
        """The secrets production checks, each with the (flat) setting it comes from."""
        named: list[tuple[str, list[SecretStr]]] = [
            ("webhook_tokens", self.access.webhook_tokens),
            ("viewer_tokens", self.access.viewer_tokens)]
        named += [(f"event_sources ({source.name})", source.secrets)
                  for source in self.access.event_sources]
        named += [(f"sinks ({sink.name}) hmac_secret", [sink.hmac_secret])
                  for sink in self.evidence.sinks if sink.hmac_secret is not None]
        if self.web.session_secret is not None:
            named.append(("web_session_secret", [self.web.session_secret]))
        return named

    def secret_values(self) -> list[str]:
        """Every configured secret, so the log redactor can mask it wherever it appears."""
        access = self.access
        secrets = [t.get_secret_value() for t in (*access.webhook_tokens, *access.viewer_tokens)]
        secrets += [s.get_secret_value() for source in access.event_sources
                    for s in source.secrets]
        secrets += [s.hmac_secret.get_secret_value() for s in self.evidence.sinks
                    if s.hmac_secret]
        if self.web.session_secret is not None:
            secrets.append(self.web.session_secret.get_secret_value())
        if self.database_url is not None:
            secrets.append(self.database_url.get_secret_value())
        return [s for s in secrets if s]


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Parse settings, turning any validation failure into one line that names the setting.

    ``overrides`` take the flat names, as the environment and the config file do.
    """
    config_file = config_file or _env_path("RESPONDER_CONFIG_FILE")
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"RESPONDER_CONFIG_FILE: no such file {config_file}")
    try:
        flat = flat_source(Settings, config_file)(**overrides)
        return Settings.model_validate(nest(flat, Settings))
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"RESPONDER_{loc.upper()}: {msg}" if loc else msg) from e


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
