"""The settings as users write them: one flat name per value, in the environment (prefix
``RESPONDER_``), the TOML config file and ``load_settings``' keywords.

The flat model is made from the groups' fields (config/groups.py), so each value is declared
once; its checks run here, on the names a message must show (``RESPONDER_KAFKA_BOOTSTRAP``).
"""

from __future__ import annotations

from copy import copy
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, create_model, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from responder.config.groups import Group
from responder.config.specs import split_commas


class FlatSource(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RESPONDER_", frozen=True, extra="forbid")

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

    _split_lists = field_validator("webhook_tokens", "viewer_tokens", "rules_public_keys",
                                   "rule_packs", mode="before", check_fields=False)(split_commas)

    @field_validator("database_url", "webhook_tokens_file", "viewer_tokens_file",
                     "audit_signing_key_file",
                     "principals_file", "max_alert_age_s", "prometheus_url", "kafka_bootstrap",
                     "web_session_secret", "kafka_metrics_group", mode="before",
                     check_fields=False)
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("web_session_secret", check_fields=False)
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("at least 32 characters (for example: openssl rand -hex 32)")
        return value

    @field_validator("listen", check_fields=False)
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("expected HOST:PORT, for example 127.0.0.1:9095")
        return value


def groups_of(settings_cls: type[BaseModel]) -> dict[str, type[Group]]:
    """The fields of the settings that hold a group, with the group's type."""
    found: dict[str, type[Group]] = {}
    for name, info in settings_cls.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, Group):
            found[name] = info.annotation
    return found


def _flat_fields(settings_cls: type[BaseModel]) -> dict[str, tuple[Any, FieldInfo]]:
    groups = groups_of(settings_cls)
    fields = {name: (info.annotation, copy(info))
              for name, info in settings_cls.model_fields.items() if name not in groups}
    for group in groups.values():
        for flat, name in group.flat_names().items():
            if flat in fields:
                raise TypeError(f"settings: two values are named {flat}")
            info = group.model_fields[name]
            fields[flat] = (info.annotation, copy(info))
    return fields


@cache
def flat_source(settings_cls: type[BaseModel], toml_file: Path | None) -> type[FlatSource]:
    """The flat model for these settings, reading ``toml_file`` too when one is given."""
    base: type[FlatSource] = FlatSource
    if toml_file is not None:
        class FileSource(FlatSource):
            model_config = SettingsConfigDict(toml_file=toml_file)

        base = FileSource
    made: type[FlatSource] = create_model(  # type: ignore[call-overload]
        "ResponderSettings", __base__=base, **_flat_fields(settings_cls))
    return made


def nest(flat: FlatSource, settings_cls: type[BaseModel]) -> dict[str, Any]:
    """The checked flat values, put in their groups (not checked again)."""
    values = {name: getattr(flat, name) for name in type(flat).model_fields}
    groups = groups_of(settings_cls)
    nested: dict[str, Any] = {name: values[name]
                              for name in settings_cls.model_fields if name not in groups}
    for field, group in groups.items():
        nested[field] = group.model_construct(
            **{name: values[flat] for flat, name in group.flat_names().items()})
    return nested
