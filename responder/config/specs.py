"""The structured values inside settings: principals, event sources and sinks, and the
readers of the token and principal files."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import NoDecode

from responder.auth import Role

TokenList = Annotated[list[SecretStr], NoDecode]
PathList = Annotated[list[Path], NoDecode]
NameList = Annotated[list[str], NoDecode]


def split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


def read_token_file(path: Path | None, setting: str) -> list[SecretStr]:
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


def read_principals(path: Path | None) -> list[PrincipalSpec]:
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
