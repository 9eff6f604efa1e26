"""Compile checked rule files into a RuleTable: targets, controls, rules and their steps,
metric conditions, evidence and the unmatched policy; every problem is kept, with its line."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from responder.errors import RuleProblem
from responder.rules import from_env
from responder.rules.controls import compile_control
from responder.rules.files import Loc, Source, line_of
from responder.rules.matchers import Matcher, MatcherSyntaxError, parse_matchers
from responder.rules.schema import MetricSpec, RuleSpec, StepSpec, TargetSpec
from responder.rules.table import (
    UNMATCHED_RULE,
    Control,
    MetricCondition,
    Rule,
    RuleTable,
    SnapshotCall,
    Step,
    Target,
)


class Compiler:
    def __init__(
        self,
        sources: list[Source],
        env: Mapping[str, str],
        resolve_secrets: bool,
        problems: list[RuleProblem],
    ) -> None:
        self.sources = sources
        self.env = env
        self.resolve_secrets = resolve_secrets
        self.problems = problems
        self.targets: dict[str, Target] = {}

    def problem(self, src: Source, loc: Loc, message: str) -> None:
        self.problems.append(RuleProblem(src.path, line_of(src.raw, loc), message))

    def compile(self, digest: str, files: tuple[str, ...]) -> RuleTable | None:
        targets = {
            name: t
            for src, name, spec in self._each("targets")
            if (t := self._target(src, name, spec)) is not None
        }
        self.targets = targets
        controls = {
            name: c
            for src, name, spec in self._each("controls")
            if (c := compile_control(partial(self.problem, src), name, spec, targets))
            is not None
        }
        rules: list[Rule] = []
        seen: set[str] = set()
        alertnames: dict[str, str] = {}
        for src in self.sources:
            assert src.spec is not None
            for i, spec in enumerate(src.spec.rules):
                if spec.id in seen:
                    self.problem(src, ("rules", i, "id"), f"duplicate rule id {spec.id!r}")
                seen.add(spec.id)
                if spec.metric is not None:
                    # An internal alert is matched to its rule by alertname alone.
                    name = spec.metric.alertname or spec.id
                    if name in alertnames:
                        self.problem(src, ("rules", i, "metric"),
                                     f"alertname {name!r} also raised by metric rule"
                                     f" {alertnames[name]!r}")
                    alertnames[name] = spec.id
                rule = self._rule(src, i, spec, controls)
                if rule is not None:
                    rules.append(rule)
        if UNMATCHED_RULE in seen:
            self.problem(*self._rule_with_id(UNMATCHED_RULE),
                         f"rule id {UNMATCHED_RULE!r} is reserved for the unmatched policy")
        unmatched = self._unmatched()
        if self.problems:
            return None
        if unmatched is None:
            return RuleTable(targets, controls, tuple(rules), digest, files)
        return RuleTable(targets, controls, tuple(rules), digest, files, *unmatched)

    def _rule_with_id(self, rule_id: str) -> tuple[Source, Loc]:
        for src in self.sources:
            assert src.spec is not None
            for i, spec in enumerate(src.spec.rules):
                if spec.id == rule_id:
                    return src, ("rules", i, "id")
        raise LookupError(rule_id)

    def _unmatched(self) -> tuple[Rule, tuple[tuple[Matcher, ...], ...]] | None:
        """The one ``unmatched:`` policy of the table, compiled as a notify-only rule."""
        declared = [src for src in self.sources if src.spec is not None and src.spec.unmatched]
        for extra in declared[1:]:
            self.problem(extra, ("unmatched",), f"unmatched also declared in {declared[0].path}")
        if not declared:
            return None
        src = declared[0]
        assert src.spec is not None
        spec = src.spec.unmatched
        assert spec is not None
        before = len(self.problems)
        groups = tuple(tuple(self._matchers(src, ("unmatched", "sev1_when"), [text]))
                       for text in spec.sev1_when)
        if not all(groups) and len(self.problems) == before:
            self.problem(src, ("unmatched", "sev1_when"),
                         "an empty matcher group would take every unmatched alert")
        if len(self.problems) > before:
            return None
        rule = Rule(UNMATCHED_RULE, spec.description, spec.severity, (), (), None, None,
                    src.path, line_of(src.raw, ("unmatched",)), page=spec.page,
                    group_by=tuple(spec.group_by))
        return rule, groups

    def _each(self, section: str) -> Iterator[tuple[Source, str, Any]]:
        first_seen: dict[str, str] = {}
        for src in self.sources:
            assert src.spec is not None
            for name, spec in getattr(src.spec, section).items():
                if name in first_seen:
                    self.problem(
                        src, (section, name), f"{section}.{name} also defined in {first_seen[name]}"
                    )
                    continue
                first_seen[name] = src.path
                yield src, name, spec

    def _target(self, src: Source, name: str, spec: TargetSpec) -> Target | None:
        try:
            base_url = from_env.base_url(self.env, name, spec,
                                         placeholder=not self.resolve_secrets)
        except from_env.EnvValueError as e:
            self.problem(src, ("targets", name, e.field), str(e))
            return None
        token: SecretStr | None = None
        if spec.auth is not None and self.resolve_secrets:
            token = self._token(src, ("targets", name, "auth"), spec.auth.bearer_token_env,
                                spec.auth.bearer_token_file)
        return Target(name, base_url.rstrip("/"), token, spec.timeout_s)

    def _token(
        self, src: Source, loc: Loc, env_name: str | None, file_name: str | None
    ) -> SecretStr | None:
        if env_name is not None:
            value = self.env.get(env_name, "")
            if not value:
                self.problem(src, loc, f"environment variable {env_name} is not set")
            return SecretStr(value)
        assert file_name is not None
        try:
            return SecretStr(Path(file_name).read_text(encoding="utf-8").strip())
        except OSError as e:
            self.problem(src, loc, f"cannot read token file {file_name}: {e.strerror}")
            return None

    def _rule(
        self, src: Source, index: int, spec: RuleSpec, controls: Mapping[str, Control]
    ) -> Rule | None:
        loc: Loc = ("rules", index)
        matchers = self._matchers(src, (*loc, "match"), spec.match or [])
        metric = (self._metric(src, (*loc, "metric"), spec.id, spec.metric)
                  if spec.metric is not None else None)
        steps = [self._step(src, (*loc, "steps", j), s, controls) for j, s in
                 enumerate(spec.steps)]
        on_failure = (self._step(src, (*loc, "on_failure"), spec.on_failure, controls)
                      if isinstance(spec.on_failure, StepSpec) else None)
        on_unknown = (self._step(src, (*loc, "on_unknown_scope"), spec.on_unknown_scope, controls)
                      if spec.on_unknown_scope else None)
        storm_step = None
        if spec.storm is not None and spec.storm.step is not None:
            storm_step = self._step(src, (*loc, "storm", "step"), spec.storm.step, controls)
            if storm_step is None:
                return None
            if storm_step.control.is_keyed:
                self.problem(src, (*loc, "storm", "step"),
                             "a storm step acts once for all scopes: use an unkeyed control")
                return None
        for where, escalation in (("on_failure", on_failure), ("on_unknown_scope", on_unknown)):
            if escalation is not None and escalation.control.is_keyed:
                # It runs when a key was refused or never seen: it has no key to act on.
                self.problem(src, (*loc, where),
                             f"{where} must use an unkeyed control: it runs when a key is"
                             f" refused or unseen, and {escalation.control.name!r} is keyed"
                             f" by {escalation.key_label!r}")
                return None
        if spec.steps and spec.on_failure is None:
            self.problem(src, (*loc, "id"),
                         f"rule {spec.id!r} has steps but no on_failure escalation (fail-closed;"
                         " 'on_failure: page' when no harsher step is allowed)")
        if any(s is None for s in steps) or (
            isinstance(spec.on_failure, StepSpec) and on_failure is None) or (
            spec.on_unknown_scope and on_unknown is None
        ) or (spec.metric is not None and metric is None):
            return None
        return Rule(spec.id, spec.description, spec.severity, tuple(matchers),
                    tuple(s for s in steps if s is not None), on_failure,
                    on_unknown or on_failure, src.path, line_of(src.raw, loc), spec.mode,
                    spec.storm.max_incidents if spec.storm else None, storm_step,
                    *self._evidence(src, loc, spec), page=spec.page,
                    metric=metric, runbook=spec.runbook)

    def _matchers(self, src: Source, loc: Loc, texts: Sequence[str]) -> list[Matcher]:
        matchers: list[Matcher] = []
        for j, text in enumerate(texts):
            try:
                matchers.extend(parse_matchers(text))
            except MatcherSyntaxError as e:
                self.problem(src, (*loc, j), str(e))
        return matchers

    def _metric(self, src: Source, loc: Loc, rule_id: str,
                spec: MetricSpec) -> MetricCondition | None:
        before = len(self.problems)
        matchers = self._matchers(src, (*loc, "match"), spec.match)
        if len(self.problems) > before:
            return None
        try:
            threshold = from_env.number(self.env, "threshold_env", spec.threshold_env,
                                        spec.threshold)
            clear = from_env.number(self.env, "clear_env", spec.clear_env,
                                    spec.threshold if spec.clear is None else spec.clear)
        except from_env.EnvValueError as e:
            self.problem(src, (*loc, e.field), str(e))
            return None
        if (clear > threshold) if spec.op in (">", ">=") else (clear < threshold):
            self.problem(src, loc, f"clear ({clear:g}) is on the wrong side of the threshold"
                                   f" ({threshold:g}) for {spec.op}")
            return None
        return MetricCondition(spec.name, tuple(matchers), spec.op, threshold,
                               spec.for_s, clear, spec.alertname or rule_id)

    def _evidence(self, src: Source, loc: Loc, spec: RuleSpec) -> tuple[
            tuple[tuple[str, str, float], ...], tuple[SnapshotCall, ...]]:
        if spec.evidence is None:
            return (), ()
        queries = tuple((q.name, q.query, q.timeout_s) for q in spec.evidence.queries)
        snapshots = []
        for i, snap in enumerate(spec.evidence.snapshots):
            target = self.targets.get(snap.target)
            if target is None:
                self.problem(src, (*loc, "evidence", "snapshots", i, "target"),
                             f"unknown target {snap.target!r}")
                continue
            snapshots.append(SnapshotCall(snap.name, target, snap.method, snap.path,
                                          snap.timeout_s))
        return queries, tuple(snapshots)

    def _step(
        self, src: Source, loc: Loc, spec: StepSpec, controls: Mapping[str, Control]
    ) -> Step | None:
        control = controls.get(spec.control)
        if control is None:
            self.problem(src, (*loc, "control"), f"unknown control {spec.control!r}")
            return None
        if spec.level not in control.levels:
            self.problem(src, (*loc, "level"),
                         f"level {spec.level!r} is not one of {', '.join(control.levels)}")
            return None
        if spec.key_from and not control.is_keyed:
            self.problem(src, (*loc, "key_from"), f"control {control.name!r} is not keyed")
            return None
        return Step(control, spec.level, spec.key_from or control.key_label)
