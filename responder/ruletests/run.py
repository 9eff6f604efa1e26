"""promtool-style rule tests: fixtures of alerts and the containment they must produce.

Each fixture file names a rules directory and a list of cases. A case feeds alerts in order
through the real matcher and planner, against a recording target that holds levels in
memory (levels only rise; a failing control runs the rule's escalation). It compares the
calls that would be made, the escalations and the refused keys with what the case expects,
and prints a diff when they differ. Nothing touches the network or a store.

A case may also give metric samples (``samples``, or ``series`` of evenly spaced values),
with times in seconds from the start of the case. They go, in time order, through the real
threshold evaluator; the internal alerts it raises are listed (``expect.alerts``, as
``firing ALERTNAME at T``) and then planned like any other alert.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from responder.engine.planner import Decision, PlannedStep, decide
from responder.engine.policy import Policy
from responder.engine.thresholds import Evaluator
from responder.model import Alert
from responder.rules.loader import load_rules
from responder.rules.table import RuleTable
from responder.ruletests.fixture import EPOCH, Case, Outcome, expected, read_fixture, step_name


class RecordingTarget:
    """Held levels in memory, with the executor's rules: only raise, escalate on failure."""

    def __init__(self, failing: list[str]) -> None:
        self.failing = set(failing)
        self.held: dict[tuple[str, str], int] = {}
        self.asked: set[tuple[str, str, str, str]] = set()  # (incident, control, key, level)
        self.out = Outcome()
        self.opened: dict[str, Decision] = {}  # "rule scope" -> its first decision
        self.applied: set[str] = set()
        self.failed: list[str] = []

    def run(self, incident: str, step: PlannedStep) -> None:
        control, key, level = step.step.control, step.key, step.step.level
        marker = (incident, control.name, key, level)
        if marker in self.asked:
            return  # the incident already asked for exactly this
        self.asked.add(marker)
        if self.held.get((control.name, key), 0) >= control.rank(level):
            return
        name = step_name(control.name, key, level)
        (self.out.escalations if step.kind == "escalation" else self.out.calls).append(name)
        if control.name in self.failing:
            if step.escalation is None:
                self.out.containment_failed += 1
                self.failed.append(incident)
                return
            esc, esc_key = step.escalation
            self.run(incident, PlannedStep("escalation", -1, esc, esc_key, None))
            return
        self.held[(control.name, key)] = control.rank(level)
        self.applied.add(incident)

    def pages(self) -> list[str]:
        """The page reasons the outbox would give, per incident, in the order opened."""
        out = []
        for incident, d in self.opened.items():
            if d.rule.severity == "sev1" and incident in self.applied:
                out.append(f"{incident}: sev1_contained")
            if d.rule.page:
                out.append(f"{incident}: rule_pages")
            out += [f"{incident}: containment_failed" for f in self.failed if f == incident]
        return out


def run_case(table: RuleTable, case: Case) -> Outcome:
    target = RecordingTarget(case.failing_controls)
    for i, fa in enumerate(case.alerts):
        alert = Alert(source="test", fingerprint=f"t{i}", status=fa.status, labels=fa.labels,
                      annotations={}, starts_at="2026-01-01T00:00:00Z",
                      truncated_alerts=fa.truncated_alerts)
        for d in decide(alert, table, Policy()):
            _apply(target, d)
    evaluator = Evaluator(table, max_series=1_000_000, stale_after_s=86_400 * 365,
                          clock=lambda: EPOCH + 86_400 * 365)
    for at, sample in case.timeline():
        evaluator.observe([sample])
        for alert in evaluator.take():
            target.out.alerts.append(_alert_line(alert, at))
            for d in decide(alert, table, Policy()):
                _apply(target, d)
    if case.expect.incidents is not None:
        target.out.incidents = list(target.opened)
    if case.expect.pages is not None:
        target.out.pages = target.pages()
    if case.expect.snapshots is not None:
        target.out.snapshots = [f"{incident}: {s.method} {s.target.name} {s.path}"
                                for incident, d in target.opened.items()
                                for s in d.rule.snapshots]
    return target.out


def _alert_line(alert: Alert, at: float) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(alert.labels.items())
                      if k != "alertname")
    selector = f"{{{labels}}}" if labels else ""
    return f"{alert.status} {alert.labels['alertname']}{selector} at {at:g}"


def _incident(d: Decision) -> str:
    return f"{d.rule.id} {d.scope}".rstrip()


def _apply(target: RecordingTarget, d: Decision) -> None:
    if d.action != "resolve":
        target.opened.setdefault(_incident(d), d)
    if d.rejected and not any(s.kind == "escalation" for s in d.steps):
        target.failed.append(_incident(d))
    target.out.rejected += [f"{r.control}:{r.label}" for r in d.rejected]
    if d.rejected and not any(s.kind == "escalation" for s in d.steps):
        target.out.containment_failed += 1
    if d.acts:
        for step in d.steps:
            target.run(_incident(d), step)


def run_file(path: Path, env: dict[str, str] | None = None) -> tuple[int, int, list[str]]:
    """(passed, failed, report lines) for one fixture file."""
    fixture = read_fixture(path)
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


