"""Load a rules directory into a RuleTable, reporting every problem with its file and line."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from responder.errors import RuleError, RuleProblem
from responder.rules import from_env
from responder.rules.matchers import Matcher, MatcherSyntaxError, parse_matchers
from responder.rules.schema import (
    ControlSpec,
    MetricSpec,
    RuleFileSpec,
    RuleSpec,
    StepSpec,
    TargetSpec,
)
from responder.rules.signing import verify
from responder.rules.table import (
    AUDIT_FIELDS,
    FIELDS,
    PLACEHOLDER,
    UNMATCHED_RULE,
    Control,
    MetricCondition,
    Rule,
    RuleTable,
    SnapshotCall,
    Step,
    Target,
)

Loc = tuple[str | int, ...]
SKIPPED_DIRS = frozenset({"fixtures", "tests"})
ALL_PACKS = "all"


@dataclass
class _Source:
    path: str
    raw: Any
    spec: RuleFileSpec | None


def rule_files(rules_dir: Path) -> list[Path]:
    """YAML files under the directory, in a stable order; fixture folders are not rules."""
    found = [
        p
        for p in rules_dir.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        and not SKIPPED_DIRS.intersection(p.relative_to(rules_dir).parts[:-1])
    ]
    return sorted(found)


def bundle_hash(rules_dir: Path, files: Sequence[Path]) -> str:
    """SHA-256 over every rule file's relative name and content: the table's identity."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(rules_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def load_rules(
    rules_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    resolve_secrets: bool = True,
    public_keys: Sequence[Path] | None = None,
    packs: Collection[str] = (),
) -> RuleTable:
    """Parse, validate and compile the table, or raise RuleError with every problem found.

    A file that names a ``pack`` is part of the table only when that pack is in ``packs``
    (``all`` enables every pack); files without one always are. With ``public_keys``
    (strict mode) the table loads only if its detached signature verifies against one of
    them; the signature covers every file of the directory, enabled or not.
    """
    env = os.environ if env is None else env
    if not rules_dir.is_dir():
        raise RuleError([RuleProblem(str(rules_dir), 0, "rules directory does not exist")])
    files = rule_files(rules_dir)
    if not files:
        raise RuleError([RuleProblem(str(rules_dir), 0, "no rule files (*.yaml) found")])
    digest = signed = bundle_hash(rules_dir, files)
    if public_keys is not None:
        verify(rules_dir, signed, public_keys)
    problems: list[RuleProblem] = []
    sources = [_parse_file(path, problems) for path in files]
    if problems:
        raise RuleError(problems)
    every = len(files)
    sources, files = _enabled(rules_dir, sources, files, packs)
    if len(files) != every:
        digest = bundle_hash(rules_dir, files)  # the table's identity: what is in force
    table = _Compiler(sources, env, resolve_secrets, problems).compile(
        digest, tuple(str(f) for f in files)
    )
    if problems or table is None:
        raise RuleError(problems)
    return dataclasses.replace(table, signed_hash=signed)


def _enabled(rules_dir: Path, sources: list[_Source], files: list[Path],
             packs: Collection[str]) -> tuple[list[_Source], list[Path]]:
    """The files that are part of the table: those of no pack, and those of enabled packs."""
    declared = {src.spec.pack for src in sources if src.spec is not None and src.spec.pack}
    unknown = sorted(set(packs) - declared - {ALL_PACKS})
    if unknown:
        raise RuleError([RuleProblem(str(rules_dir), 0,
                                     f"no rule file declares pack {', '.join(unknown)}"
                                     f" (known: {', '.join(sorted(declared)) or 'none'})")])
    keep = [i for i, src in enumerate(sources)
            if src.spec is None or src.spec.pack is None or ALL_PACKS in packs
            or src.spec.pack in packs]
    return [sources[i] for i in keep], [files[i] for i in keep]


def _parse_file(path: Path, problems: list[RuleProblem]) -> _Source:
    yaml = YAML(typ="rt")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        problems.append(RuleProblem(str(path), line, f"YAML: {e.problem or e.context}"))
        return _Source(str(path), None, None)
    except (OSError, UnicodeDecodeError) as e:
        problems.append(RuleProblem(str(path), 0, f"cannot read: {e}"))
        return _Source(str(path), None, None)
    if raw is None:
        raw = {}
    try:
        spec = RuleFileSpec.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc)
            problems.append(
                RuleProblem(str(path), line_of(raw, loc), f"{where}: {err['msg']}")
            )
        return _Source(str(path), raw, None)
    return _Source(str(path), raw, spec)


def line_of(node: Any, loc: Loc) -> int:
    """1-based line of the deepest node along loc that ruamel knows a position for."""
    line = 1
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None and isinstance(part, str) and isinstance(node, Mapping):
                if part in node:
                    line = lc.key(part)[0] + 1
            elif lc is not None and isinstance(part, int) and isinstance(node, list):
                line = lc.item(part)[0] + 1
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    return line


class _Compiler:
    def __init__(
        self,
        sources: list[_Source],
        env: Mapping[str, str],
        resolve_secrets: bool,
        problems: list[RuleProblem],
    ) -> None:
        self.sources = sources
        self.env = env
        self.resolve_secrets = resolve_secrets
        self.problems = problems
        self.targets: dict[str, Target] = {}

    def problem(self, src: _Source, loc: Loc, message: str) -> None:
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
            if (c := self._control(src, name, spec, targets)) is not None
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

    def _rule_with_id(self, rule_id: str) -> tuple[_Source, Loc]:
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

    def _each(self, section: str) -> Iterator[tuple[_Source, str, Any]]:
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

    def _target(self, src: _Source, name: str, spec: TargetSpec) -> Target | None:
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
        self, src: _Source, loc: Loc, env_name: str | None, file_name: str | None
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

    def _control(
        self, src: _Source, name: str, spec: ControlSpec, targets: Mapping[str, Target]
    ) -> Control | None:
        loc: Loc = ("controls", name)
        ok = True
        if spec.target not in targets:
            self.problem(src, (*loc, "target"), f"unknown target {spec.target!r}")
            ok = False
        if len(set(spec.levels)) != len(spec.levels):
            self.problem(src, (*loc, "levels"), "levels must be unique")
            ok = False
        try:
            pattern = re.compile(spec.key_pattern)
        except re.error as e:
            self.problem(src, (*loc, "key_pattern"), f"invalid regex: {e}")
            ok = False
        ok = self._fields_ok(src, loc, spec) and ok
        ok = self._stops_ok(src, loc, spec) and ok
        if not ok:
            return None
        read = spec.read
        return Control(name, targets[spec.target], tuple(spec.levels), spec.key_label, pattern,
                       spec.apply.method, spec.apply.path, spec.apply.body,
                       tuple(spec.release_stops or ()), spec.two_person_release,
                       read.method if read else None, read.path if read else None,
                       read.field if read else None)

    def _fields_ok(self, src: _Source, loc: Loc, spec: ControlSpec) -> bool:
        """Only the named fields may be substituted, and {key} only on a keyed control."""
        places = list(_strings(spec.apply.path, spec.apply.body, ("apply",)))
        if spec.read is not None:
            places.append((("read", "path"), spec.read.path))
        ok = True
        for where, text in places:
            allowed = FIELDS if where[0] == "apply" else FIELDS - {"level"}
            if where[:2] == ("apply", "body"):
                allowed = allowed | AUDIT_FIELDS
            for field in PLACEHOLDER.findall(text):
                if field not in allowed:
                    self.problem(src, (*loc, *where),
                                 f"unknown field {{{field}}}: only "
                                 f"{', '.join('{' + f + '}' for f in sorted(allowed))}"
                                 " may be substituted")
                    ok = False
                elif field == "key" and spec.key_label is None:
                    self.problem(src, (*loc, *where), "{key} used but the control has no key_label")
                    ok = False
        return ok

    def _stops_ok(self, src: _Source, loc: Loc, spec: ControlSpec) -> bool:
        stops = spec.release_stops or ()
        ok = True
        for stop in stops:
            if stop not in spec.levels:
                self.problem(src, (*loc, "release_stops"), f"unknown level {stop!r}")
                ok = False
        if stops and spec.levels[0] not in stops:
            self.problem(src, (*loc, "release_stops"),
                         f"release_stops must include the lowest level {spec.levels[0]!r}")
            ok = False
        return ok

    def _rule(
        self, src: _Source, index: int, spec: RuleSpec, controls: Mapping[str, Control]
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

    def _matchers(self, src: _Source, loc: Loc, texts: Sequence[str]) -> list[Matcher]:
        matchers: list[Matcher] = []
        for j, text in enumerate(texts):
            try:
                matchers.extend(parse_matchers(text))
            except MatcherSyntaxError as e:
                self.problem(src, (*loc, j), str(e))
        return matchers

    def _metric(self, src: _Source, loc: Loc, rule_id: str,
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

    def _evidence(self, src: _Source, loc: Loc, spec: RuleSpec) -> tuple[
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
        self, src: _Source, loc: Loc, spec: StepSpec, controls: Mapping[str, Control]
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


def _strings(path: str, body: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    yield (*loc, "path"), path
    stack: list[tuple[Loc, Any]] = [((*loc, "body"), body)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, Mapping):
            stack.extend(((*where, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*where, i), v) for i, v in enumerate(value))
