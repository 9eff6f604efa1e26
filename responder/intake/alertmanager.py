"""Parse Alertmanager's webhook payload (version 4) into alerts, naming the bad field."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from responder import jsontext
from responder.model import Alert

RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
MAX_LABELS = 128
MAX_LABEL_VALUE = 4096
INT32_MAX = 2**31 - 1


class PayloadError(ValueError):
    """The payload is not an Alertmanager webhook; ``field`` names where it went wrong."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class _AMAlert(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(max_length=MAX_LABELS)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = Field(pattern=RFC3339)  # noqa: N815 - Alertmanager's field names
    endsAt: str = Field(default="", pattern=f"{RFC3339}|^$")  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = Field(min_length=1, max_length=64)


class _AMPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    alerts: list[_AMAlert] = Field(min_length=1, max_length=10_000)
    groupKey: str = ""  # noqa: N815
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    truncatedAlerts: int = Field(default=0, ge=0, le=INT32_MAX)  # noqa: N815 - an int column


def check_text(value: Any, path: str) -> None:
    """Refuse text PostgreSQL cannot store (NUL, lone surrogates) before it reaches a write."""
    if isinstance(value, str):
        if "\x00" in value:
            raise PayloadError(path, "contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PayloadError(path, "is not valid Unicode (lone surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"{path}.{key!s:.64}".lstrip("."))
            check_text(item, f"{path}.{key!s:.64}".lstrip("."))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_text(item, f"{path}.{i}".lstrip("."))


def parse_payload(body: bytes) -> list[Alert]:
    """The alerts in a webhook body, or PayloadError naming the first bad field."""
    try:
        data = jsontext.loads(body)
    except jsontext.JSONTextError as e:
        raise PayloadError("", f"malformed JSON: {e}") from e
    if not isinstance(data, dict):
        raise PayloadError("", "payload must be a JSON object")
    # JSON text spells a NUL or a lone surrogate only as a \u escape (raw, the first is a
    # control character the parser refuses, the second is not UTF-8): without one, no
    # string of the document holds either.
    return payload_alerts(data, text_checked=b"\\u" not in body)


def payload_alerts(data: dict[str, Any], *, text_checked: bool = False) -> list[Alert]:
    """The alerts of an already decoded Alertmanager payload. ``text_checked``: its text
    is known to hold nothing check_text refuses."""
    if not text_checked:
        check_text(data, "")
    try:
        payload = _AMPayload.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise PayloadError(field, err["msg"]) from e
    for i, a in enumerate(payload.alerts):
        for name, value in a.labels.items():
            if len(value) > MAX_LABEL_VALUE:
                raise PayloadError(f"alerts.{i}.labels.{name[:64]}", "label value too long")
    return [
        Alert(
            source="alertmanager",
            fingerprint=a.fingerprint,
            status=a.status,
            labels=a.labels,
            annotations=a.annotations,
            starts_at=a.startsAt,
            ends_at=a.endsAt,
            generator_url=a.generatorURL,
            group_key=payload.groupKey,
            truncated_alerts=payload.truncatedAlerts,
            receiver=payload.receiver,
        )
        for a in payload.alerts
    ]
