"""The compiled rule table the engine works from: immutable, hashed, cheap to match."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from responder.rules.matchers import Matcher, parse_matchers

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
FIELDS = frozenset({"key", "level", "control"})
AUDIT_FIELDS = frozenset({"rule", "incident", "reason", "ticket"})
"""Fields a control's body (never its path) may carry so the target audits who asked and
why: the rule id, the incident id, a reason and a ticket ("" where there is none)."""
UNMATCHED_RULE = "unmatched"
"""The id of the unmatched policy's rule: it takes alerts that no other rule matches."""
METRICS_SOURCE = "metrics"
"""The source of internal alerts raised by metric rules; only metric rules match them."""
COMPARISONS: Mapping[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


DEFAULT_SEV1_WHEN = (
    'severity=~"(?i)sev-?[01]|critical|page|p[01]|emergency"',
    'alertname=~"(?i).*(sev-?1|invariant|corrupt|data_?loss|split_?brain|leak|breach).*"',
)
"""Used when no rule file declares ``unmatched.sev1_when``: for the unmatched metric."""


def default_sev1_when() -> tuple[tuple[Matcher, ...], ...]:
    return tuple(tuple(parse_matchers(text)) for text in DEFAULT_SEV1_WHEN)


@dataclass(frozen=True)
class Target:
    """An admin API that applies control levels."""

    name: str
    base_url: str
    token: SecretStr | None
    timeout_s: float


@dataclass(frozen=True)
class Control:
    """A named thing with ordered levels, optionally keyed, applied through a target."""

    name: str
    target: Target
    levels: tuple[str, ...]
    key_label: str | None
    key_pattern: re.Pattern[str]
    method: str
    path: str
    body: Mapping[str, Any] | None
    release_stops: tuple[str, ...] = ()
    two_person_release: bool = False
    read_method: str | None = None
    read_path: str | None = None
    read_field: str | None = None

    @property
    def is_readable(self) -> bool:
        return self.read_path is not None

    def render_read(self, key: str) -> str:
        assert self.read_path is not None
        values = {"key": key, "control": self.name}
        return PLACEHOLDER.sub(lambda m: quote(values[m.group(1)], safe=""), self.read_path)

    def level_in(self, answer: Any) -> str | None:
        """The level named at read_field in a target's JSON answer, if it is one of ours."""
        value = answer
        for part in (self.read_field or "").split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        return value if isinstance(value, str) and value in self.levels else None

    @property
    def is_keyed(self) -> bool:
        return self.key_label is not None

    def rank(self, level: str) -> int:
        """Position of a level: higher is safer. Raises ValueError for an unknown level."""
        try:
            return self.levels.index(level)
        except ValueError:
            raise ValueError(f"{self.name}: unknown level {level!r}") from None

    def release_next(self, current: str) -> str | None:
        """The one level a release from ``current`` may go to: the next stop below it."""
        stops = self.release_stops or self.levels
        below = [level for level in stops if self.rank(level) < self.rank(current)]
        return max(below, key=self.rank) if below else None

    def render(self, key: str, level: str, audit: Mapping[str, str] | None = None,
               ) -> tuple[str, Mapping[str, Any] | None]:
        """Substitute the named fields into path and body; the key is URL-quoted in the path.
        ``audit`` gives the body's audit fields (rule, incident, reason, ticket)."""
        values = {"key": key, "level": level, "control": self.name}
        path = PLACEHOLDER.sub(lambda m: quote(values[m.group(1)], safe=""), self.path)
        if self.body is None:
            return path, None
        body_values = {**dict.fromkeys(AUDIT_FIELDS, ""), **(audit or {}), **values}
        return path, _substitute(self.body, body_values)


def _substitute(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], value)
    if isinstance(value, Mapping):
        return {k: _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    return value


@dataclass(frozen=True)
class Step:
    """Raise one control (keyed by a label, if the control is keyed) to a level."""

    control: Control
    level: str
    key_label: str | None

    def key_for(self, labels: Mapping[str, str]) -> str:
        """The control key this step acts on for these labels ("" for an unkeyed control)."""
        return labels.get(self.key_label, "") if self.key_label else ""

    def describe(self) -> str:
        key = f"[{self.key_label}]" if self.key_label else ""
        return f"{self.control.name}{key} -> {self.level}"


@dataclass(frozen=True)
class SnapshotCall:
    """A GET of a target's status endpoint, or a POST asking it to preserve something."""

    name: str
    target: Target
    method: str
    path: str
    timeout_s: float


@dataclass(frozen=True)
class MetricCondition:
    """``name{matchers} op threshold`` held for ``for_s``; once firing, it holds until
    ``name op clear`` no longer does (hysteresis)."""

    name: str
    matchers: tuple[Matcher, ...]
    op: str
    threshold: float
    for_s: float
    clear: float
    alertname: str

    @property
    def compare(self) -> Callable[[float, float], bool]:
        return COMPARISONS[self.op]

    def selects(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def describe(self) -> str:
        selector = ",".join(str(m) for m in self.matchers)
        return (f"{self.name}{{{selector}}} {self.op} {self.threshold:g} for {self.for_s:g}s"
                f" (clears at {self.clear:g})")


@dataclass(frozen=True)
class Rule:
    """Matchers plus the ordered containment steps and the escalation for failure."""

    id: str
    description: str
    severity: str
    matchers: tuple[Matcher, ...]
    steps: tuple[Step, ...]
    on_failure: Step | None
    on_unknown_scope: Step | None
    file: str
    line: int
    mode: str = "enforce"
    storm_max: int | None = None
    storm_step: Step | None = None
    queries: tuple[tuple[str, str, float], ...] = ()
    """Prometheus instant queries for evidence: (name, query, timeout_s)."""
    snapshots: tuple[SnapshotCall, ...] = ()
    """Calls to targets whose answers go into the evidence."""
    page: bool = False
    """Page for every new incident, not only for a SEV1 containment or a failure."""
    runbook: str | None = None
    """The rule's runbook link (URL or repository path), for pages and the incident page."""
    metric: MetricCondition | None = None
    """Set for a metric rule: it matches only the internal alerts its condition raises."""
    group_by: tuple[str, ...] = ()
    """Labels naming one incident when the steps key none (the unmatched policy's)."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def scope_labels(self) -> tuple[str, ...]:
        """Labels that key this rule's steps; together they name one incident."""
        keyed = {s.key_label for s in self.steps if s.key_label}
        return tuple(sorted(keyed or self.group_by))


@dataclass(frozen=True)
class RuleTable:
    """The whole rule table in force, with the hash that every record carries."""

    targets: Mapping[str, Target]
    controls: Mapping[str, Control]
    rules: tuple[Rule, ...]
    bundle_hash: str
    files: tuple[str, ...]
    unmatched: Rule | None = None
    """The unmatched policy: an incident (and page) for an unmatched alert that looks SEV1."""
    sev1_when: tuple[tuple[Matcher, ...], ...] = field(default_factory=default_sev1_when)
    """Matcher groups, any one of which makes an alert look like SEV1."""
    signed_hash: str = ""
    """The hash over every rule file, enabled pack or not: what `rules sign` signs. It
    equals bundle_hash unless packs leave files out; records carry both."""
    _alert_rules: tuple[Rule, ...] = field(init=False, repr=False, compare=False)
    _by_alertname: Mapping[str, Rule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_alert_rules",
                           tuple(r for r in self.rules if r.metric is None))
        object.__setattr__(self, "_by_alertname", {r.metric.alertname: r for r in self.rules
                                                   if r.metric is not None})

    def match(self, labels: Mapping[str, str], source: str = "") -> list[Rule]:
        """Alert rules for alerts from outside; for an internal alert, its own metric rule."""
        if source == METRICS_SOURCE:
            rule = self._by_alertname.get(labels.get("alertname", ""))
            return [rule] if rule is not None else []
        rules = [r for r in self._alert_rules if r.matches(labels)]
        if not rules and self.unmatched is not None and self.looks_sev1(labels):
            return [self.unmatched]
        return rules

    def looks_sev1(self, labels: Mapping[str, str]) -> bool:
        """True when the alert's name or severity looks like a SEV1 (see ``sev1_when``)."""
        return any(all(m.matches(labels) for m in group) for group in self.sev1_when)

    @property
    def metric_rules(self) -> tuple[Rule, ...]:
        return tuple(self._by_alertname.values())

    def rule(self, rule_id: str) -> Rule | None:
        if self.unmatched is not None and rule_id == self.unmatched.id:
            return self.unmatched
        return next((r for r in self.rules if r.id == rule_id), None)
