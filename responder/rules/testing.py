"""promtool-style rule tests: fixtures of alerts and the containment they must produce.

Each fixture file names a rules directory and a list of cases. A case feeds alerts in order
through the real matcher and planner, against a recording target that holds levels in
memory (levels only rise; a failing control runs the rule's escalation). It compares the
calls that would be made, the escalations and the refused keys with what the case expects,
and prints a diff when they differ. Nothing touches the network or a store.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML

from responder.engine.planner import Decision, PlannedStep, decide
from responder.engine.policy import Policy
from responder.errors import RuleError, RuleProblem
from responder.model import Alert
from responder.rules.loader import load_rules
from responder.rules.table import RuleTable

UNKEYED = "-"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FixtureAlert(_Strict):
    labels: dict[str, str]
    status: Literal["firing", "resolved"] = "firing"
    truncated_alerts: int = 0


class Call(_Strict):
    control: str
    key: str = UNKEYED
    level: str


class Expect(_Strict):
    calls: list[Call] = Field(default_factory=list)
    escalations: list[Call] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list)  # "control:label"
    containment_failed: int = 0


class Case(_Strict):
    name: str
    alerts: list[FixtureAlert] = Field(min_length=1)
    failing_controls: list[str] = Field(default_factory=list)
    expect: Expect


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

    def lines(self) -> list[str]:
        return ([f"call {c}" for c in self.calls]
                + [f"escalation {c}" for c in self.escalations]
                + [f"rejected {r}" for r in self.rejected]
                + [f"containment_failed {self.containment_failed}"])


def _name(control: str, key: str, level: str) -> str:
    return f"{control}[{key or UNKEYED}] -> {level}"


def expected(case: Case) -> Outcome:
    e = case.expect
    return Outcome([_name(c.control, "" if c.key == UNKEYED else c.key, c.level)
                    for c in e.calls],
                   [_name(c.control, "" if c.key == UNKEYED else c.key, c.level)
                    for c in e.escalations],
                   list(e.rejected), e.containment_failed)


class RecordingTarget:
    """Held levels in memory, with the executor's rules: only raise, escalate on failure."""

    def __init__(self, failing: list[str]) -> None:
        self.failing = set(failing)
        self.held: dict[tuple[str, str], int] = {}
        self.asked: set[tuple[str, str, str, str]] = set()  # (incident, control, key, level)
        self.out = Outcome()

    def run(self, incident: str, step: PlannedStep) -> None:
        control, key, level = step.step.control, step.key, step.step.level
        marker = (incident, control.name, key, level)
        if marker in self.asked:
            return  # the incident already asked for exactly this
        self.asked.add(marker)
        if self.held.get((control.name, key), 0) >= control.rank(level):
            return
        name = _name(control.name, key, level)
        (self.out.escalations if step.kind == "escalation" else self.out.calls).append(name)
        if control.name in self.failing:
            if step.escalation is None:
                self.out.containment_failed += 1
                return
            esc, esc_key = step.escalation
            self.run(incident, PlannedStep("escalation", -1, esc, esc_key, None))
            return
        self.held[(control.name, key)] = control.rank(level)


def run_case(table: RuleTable, case: Case) -> Outcome:
    target = RecordingTarget(case.failing_controls)
    for i, fa in enumerate(case.alerts):
        alert = Alert(source="test", fingerprint=f"t{i}", status=fa.status, labels=fa.labels,
                      annotations={}, starts_at="2026-01-01T00:00:00Z",
                      truncated_alerts=fa.truncated_alerts)
        for d in decide(alert, table, Policy()):
            _apply(target, d)
    return target.out


def _apply(target: RecordingTarget, d: Decision) -> None:
    target.out.rejected += [f"{r.control}:{r.label}" for r in d.rejected]
    if d.rejected and not any(s.kind == "escalation" for s in d.steps):
        target.out.containment_failed += 1
    if d.acts:
        for step in d.steps:
            target.run(f"{d.rule.id}|{d.scope}", step)


def run_file(path: Path, env: dict[str, str] | None = None) -> tuple[int, int, list[str]]:
    """(passed, failed, report lines) for one fixture file."""
    try:
        fixture = Fixture.model_validate(YAML(typ="safe").load(path.read_text()))
    except ValidationError as e:
        err = e.errors()[0]
        raise RuleError([RuleProblem(str(path), 0, f"{'.'.join(map(str, err['loc']))}:"
                                                   f" {err['msg']}")]) from e
    table = load_rules((path.parent / fixture.rules_dir).resolve(), env=env,
                       resolve_secrets=False, packs=fixture.packs)
    passed, failed, report = 0, 0, []
    for case in fixture.tests:
        got, want = run_case(table, case).lines(), expected(case).lines()
        if got == want:
            passed += 1
            report.append(f"  ok    {case.name}")
            continue
        failed += 1
        report.append(f"  FAIL  {case.name}")
        report += ["        " + line for line in difflib.unified_diff(
            want, got, "expected", "actual", lineterm="")]
    return passed, failed, report


def summary(results: list[tuple[Path, int, int, list[str]]]) -> tuple[list[str], bool]:
    lines: list[str] = []
    total_failed = 0
    for path, _, failed, report in results:
        lines.append(f"{path}:")
        lines += report
        total_failed += failed
    passed = sum(r[1] for r in results)
    lines.append(f"{passed} passed, {total_failed} failed")
    return lines, total_failed == 0


