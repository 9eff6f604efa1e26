"""The fixture file of ``responder test-rules``: a rules directory and its cases, each
with the alerts or metric samples it feeds and the containment it expects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from responder.engine.thresholds import Sample
from responder.errors import FixtureError
from responder.rules.loader import line_of
from responder.rules.schema import METRIC_NAME, duration_s

UNKEYED = "-"
EPOCH = 1_700_000_000.0  # sample time 0 of every case


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FixtureAlert(_Strict):
    labels: dict[str, str]
    status: Literal["firing", "resolved"] = "firing"
    truncated_alerts: int = 0


class FixtureSample(_Strict):
    name: str = Field(pattern=METRIC_NAME)
    labels: dict[str, str] = Field(default_factory=dict)
    value: float
    at: float = Field(ge=0)

    _at = field_validator("at", mode="before")(duration_s)


class FixtureSeries(_Strict):
    """Values of one series at ``start``, ``start + interval``, ..."""

    name: str = Field(pattern=METRIC_NAME)
    labels: dict[str, str] = Field(default_factory=dict)
    start: float = Field(default=0.0, ge=0)
    interval: float = Field(gt=0)
    values: list[float] = Field(min_length=1)

    _times = field_validator("start", "interval", mode="before")(duration_s)


class Call(_Strict):
    control: str
    key: str = UNKEYED
    level: str


class Expect(_Strict):
    calls: list[Call] = Field(default_factory=list)
    escalations: list[Call] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list)  # "control:label"
    containment_failed: int = 0
    alerts: list[str] = Field(default_factory=list)  # "firing ALERTNAME at T" (metric rules)
    # Checked only when given: "RULE SCOPE" of each incident opened, and "RULE SCOPE: why"
    # of each page (rule_pages: the rule pages; sev1_contained; containment_failed).
    incidents: list[str] | None = None
    pages: list[str] | None = None
    # "RULE SCOPE: METHOD TARGET PATH" of each target snapshot the incidents' bundles take.
    snapshots: list[str] | None = None


class Case(_Strict):
    name: str
    alerts: list[FixtureAlert] = Field(default_factory=list)
    samples: list[FixtureSample] = Field(default_factory=list)
    series: list[FixtureSeries] = Field(default_factory=list)
    failing_controls: list[str] = Field(default_factory=list)
    expect: Expect

    @model_validator(mode="after")
    def _something(self) -> Case:
        if not (self.alerts or self.samples or self.series):
            raise ValueError("a case needs alerts, samples or series")
        return self

    def timeline(self) -> list[tuple[float, Sample]]:
        """Every sample of the case, in time order (stable for equal times)."""
        points = [(s.at, (s.name, s.labels, s.value, EPOCH + s.at)) for s in self.samples]
        for series in self.series:
            for i, value in enumerate(series.values):
                at = series.start + i * series.interval
                points.append((at, (series.name, series.labels, value, EPOCH + at)))
        return sorted(points, key=lambda p: p[0])


class Fixture(_Strict):
    rules_dir: str = ".."
    packs: list[str] = Field(default_factory=list)
    tests: list[Case] = Field(min_length=1)


@dataclass
class Outcome:
    calls: list[str] = field(default_factory=list)
    escalations: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    containment_failed: int = 0
    alerts: list[str] = field(default_factory=list)
    incidents: list[str] | None = None
    pages: list[str] | None = None
    snapshots: list[str] | None = None

    def lines(self) -> list[str]:
        return ([f"alert {a}" for a in self.alerts]
                + [f"call {c}" for c in self.calls]
                + [f"escalation {c}" for c in self.escalations]
                + [f"rejected {r}" for r in self.rejected]
                + [f"containment_failed {self.containment_failed}"]
                + [f"incident {i}" for i in self.incidents or ()]
                + [f"page {p}" for p in self.pages or ()]
                + [f"snapshot {s}" for s in self.snapshots or ()])


def step_name(control: str, key: str, level: str) -> str:
    return f"{control}[{key or UNKEYED}] -> {level}"


def expected(case: Case) -> Outcome:
    e = case.expect
    return Outcome([step_name(c.control, "" if c.key == UNKEYED else c.key, c.level)
                    for c in e.calls],
                   [step_name(c.control, "" if c.key == UNKEYED else c.key, c.level)
                    for c in e.escalations],
                   list(e.rejected), e.containment_failed, list(e.alerts), e.incidents,
                   e.pages, e.snapshots)


def read_fixture(path: Path) -> Fixture:
    """The fixture file, validated; a problem names the file and line."""
    try:
        raw = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FixtureError(str(path), 0, "no such file") from e
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise FixtureError(str(path), mark.line + 1 if mark else 0,
                           f"not YAML: {getattr(e, 'problem', None) or e}") from e
    try:
        return Fixture.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        raise FixtureError(str(path), line_of(raw, loc),
                           f"{'.'.join(map(str, loc))}: {err['msg']}") from e
