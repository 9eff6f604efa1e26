"""The YAML shape of rule files, as pydantic models; cross-references are checked in loader."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from responder.durations import parse_duration_s

# Never "." or "..": the URL library would remove such a path segment (actions/paths.py).
DEFAULT_KEY_PATTERN = r"^(?!\.{1,2}$)[A-Za-z0-9._:-]{1,64}$"
NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
BASE_URL = r"^https?://[^\s/]+(/.*)?$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSpec(_Spec):
    """Bearer token for the admin API, read from an environment variable or a file."""

    bearer_token_env: str | None = None
    bearer_token_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AuthSpec:
        if (self.bearer_token_env is None) == (self.bearer_token_file is None):
            raise ValueError("give exactly one of bearer_token_env or bearer_token_file")
        return self


class TargetSpec(_Spec):
    """An admin API. ``base_url_env``, when set in the environment, overrides ``base_url``;
    either alone is enough (without ``base_url`` the variable must be set)."""

    base_url: str | None = Field(default=None, pattern=BASE_URL)
    base_url_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    auth: AuthSpec | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=120)

    @model_validator(mode="after")
    def _some_url(self) -> TargetSpec:
        if self.base_url is None and self.base_url_env is None:
            raise ValueError("give base_url, base_url_env, or both")
        return self


class ApplySpec(_Spec):
    method: Literal["POST", "PUT", "PATCH"] = "PUT"
    path: str = Field(pattern=r"^/")
    body: dict[str, Any] | None = None


class ReadSpec(_Spec):
    """How to read a control's current level back from the target."""

    method: Literal["GET", "POST"] = "GET"
    path: str = Field(pattern=r"^/")
    field: str = Field(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


class ControlSpec(_Spec):
    target: str
    levels: list[str] = Field(min_length=2)
    key_label: str | None = Field(default=None, pattern=LABEL)
    key_pattern: str = DEFAULT_KEY_PATTERN
    apply: ApplySpec
    # Levels a release may stop at, so "resume through CANCEL_ONLY" can skip SOFT_HALT.
    release_stops: list[str] | None = None
    # A release waits for a second operator's approval within the approval TTL.
    two_person_release: bool = False
    read: ReadSpec | None = None


class StepSpec(_Spec):
    control: str
    level: str
    key_from: str | None = Field(default=None, pattern=LABEL)


class StormSpec(_Spec):
    """Past max_incidents new scopes per window, run step once instead (none: pause, page)."""

    max_incidents: int = Field(gt=0)
    step: StepSpec | None = None


class QuerySpec(_Spec):
    """A Prometheus instant query whose answer goes into the incident's evidence."""

    name: str = Field(pattern=NAME)
    query: str = Field(min_length=1, max_length=2000)
    timeout_s: float = Field(default=5.0, gt=0, le=60)


class SnapshotSpec(_Spec):
    """A call to a target whose answer goes into the evidence, hashed: a GET of a status,
    offsets or config endpoint, or a POST asking the target to preserve something (its
    data directory, a WAL segment) and answer with a reference. The POST body names the
    rule and the incident, and carries an Idempotency-Key, so it is asked for once."""

    name: str = Field(pattern=NAME)
    target: str
    method: Literal["GET", "POST"] = "GET"
    path: str = Field(pattern=r"^/")
    timeout_s: float = Field(default=5.0, gt=0, le=60)


class EvidenceSpec(_Spec):
    queries: list[QuerySpec] = Field(default_factory=list)
    snapshots: list[SnapshotSpec] = Field(default_factory=list)


def duration_s(value: Any) -> Any:
    """Seconds from a number or a Prometheus-style duration such as ``90s``, ``2m`` or ``1h30m``."""
    if not isinstance(value, str):
        return value
    return parse_duration_s(value)  # the one syntax (responder/durations.py), days included


class MetricSpec(_Spec):
    """A threshold condition on metric samples: ``name{match} op threshold`` held for ``for``.

    Once firing, the condition clears only when ``name op clear`` stops holding, so a value
    hovering near the threshold does not flap. ``clear`` defaults to the threshold.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=METRIC_NAME)
    match: list[str] = Field(default_factory=list)
    op: Literal[">", ">=", "<", "<="]
    threshold: float = Field(allow_inf_nan=False)
    # Settings: environment variables that, when set, replace threshold and clear.
    threshold_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    clear_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    for_s: float = Field(default=0.0, ge=0, le=7 * 86400, alias="for")
    clear: float | None = Field(default=None, allow_inf_nan=False)
    alertname: str | None = Field(default=None, pattern=LABEL)

    _for_duration = field_validator("for_s", mode="before")(duration_s)

    @model_validator(mode="after")
    def _clear_on_the_safe_side(self) -> MetricSpec:
        if self.clear is None:
            return self
        above = self.op in (">", ">=")
        if above and self.clear > self.threshold:
            raise ValueError(f"clear ({self.clear:g}) must be at or below the threshold"
                             f" ({self.threshold:g}) for {self.op}")
        if not above and self.clear < self.threshold:
            raise ValueError(f"clear ({self.clear:g}) must be at or above the threshold"
                             f" ({self.threshold:g}) for {self.op}")
        return self


class RuleSpec(_Spec):
    id: str = Field(pattern=NAME)
    description: str = ""
    severity: str = Field(pattern=r"^[a-z0-9]+$")
    match: list[str] | None = Field(default=None, min_length=1)
    metric: MetricSpec | None = None
    steps: list[StepSpec] = Field(default_factory=list)
    # A step on an unkeyed control, or "page": no harsher step is allowed, so a failure
    # (after the call's own retries) is recorded as containment_failed, which pages.
    on_failure: StepSpec | Literal["page"] | None = None
    on_unknown_scope: StepSpec | None = None
    mode: Literal["enforce", "dry_run"] = "enforce"
    storm: StormSpec | None = None
    evidence: EvidenceSpec | None = None
    # Page a person for every new incident of this rule, containment or not.
    page: bool = False
    # The runbook a page and the incident page link to: a URL, or a path in this repository.
    runbook: str | None = Field(default=None, min_length=1, max_length=2000,
                                pattern=r"^[^\s<>\"]+$")

    @model_validator(mode="after")
    def _alert_or_metric(self) -> RuleSpec:
        if self.metric is None and self.match is None:
            raise ValueError("a rule needs match (alert matchers) or metric (a threshold)")
        if self.metric is not None and self.match is not None:
            raise ValueError("a metric rule takes its label matchers under metric.match")
        return self


class UnmatchedSpec(_Spec):
    """What becomes of an alert that matches no rule. Every one is counted (by alertname)
    and logged at warning; one that matches any ``sev1_when`` group also opens an incident
    of rule ``unmatched``, which pages when ``page`` is set."""

    description: str = "An alert that looks like a SEV1 matched no rule; a person must look."
    severity: str = Field(default="sev1", pattern=r"^[a-z0-9]+$")
    sev1_when: list[str] = Field(min_length=1)
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    page: bool = True

    @field_validator("group_by")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        bad = [label for label in value if re.fullmatch(LABEL, label) is None]
        if bad:
            raise ValueError(f"not label names: {', '.join(bad)}")
        return value


class RuleFileSpec(_Spec):
    # A file naming a pack is loaded only when that pack is enabled (RESPONDER_RULE_PACKS).
    pack: str | None = Field(default=None, pattern=NAME)
    targets: dict[str, TargetSpec] = Field(default_factory=dict)
    controls: dict[str, ControlSpec] = Field(default_factory=dict)
    rules: list[RuleSpec] = Field(default_factory=list)
    unmatched: UnmatchedSpec | None = None
