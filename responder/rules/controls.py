"""A control's checks and compilation: its target, unique levels, key pattern, the fields
its calls may substitute, and its release stops."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from responder.rules.files import Loc
from responder.rules.schema import ControlSpec
from responder.rules.table import AUDIT_FIELDS, FIELDS, PLACEHOLDER, Control, Target

Report = Callable[[Loc, str], None]
"""Records a problem at a place in the rule file being compiled."""


def compile_control(report: Report, name: str, spec: ControlSpec,
                    targets: Mapping[str, Target]) -> Control | None:
    loc: Loc = ("controls", name)
    ok = True
    if spec.target not in targets:
        report((*loc, "target"), f"unknown target {spec.target!r}")
        ok = False
    if len(set(spec.levels)) != len(spec.levels):
        report((*loc, "levels"), "levels must be unique")
        ok = False
    try:
        pattern = re.compile(spec.key_pattern)
    except re.error as e:
        report((*loc, "key_pattern"), f"invalid regex: {e}")
        ok = False
    ok = _fields_ok(report, loc, spec) and ok
    ok = _stops_ok(report, loc, spec) and ok
    if not ok:
        return None
    read = spec.read
    return Control(name, targets[spec.target], tuple(spec.levels), spec.key_label, pattern,
                   spec.apply.method, spec.apply.path, spec.apply.body,
                   tuple(spec.release_stops or ()), spec.two_person_release,
                   read.method if read else None, read.path if read else None,
                   read.field if read else None)


def _fields_ok(report: Report, loc: Loc, spec: ControlSpec) -> bool:
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
                report((*loc, *where),
                       f"unknown field {{{field}}}: only "
                       f"{', '.join('{' + f + '}' for f in sorted(allowed))}"
                       " may be substituted")
                ok = False
            elif field == "key" and spec.key_label is None:
                report((*loc, *where), "{key} used but the control has no key_label")
                ok = False
    return ok


def _stops_ok(report: Report, loc: Loc, spec: ControlSpec) -> bool:
    stops = spec.release_stops or ()
    ok = True
    for stop in stops:
        if stop not in spec.levels:
            report((*loc, "release_stops"), f"unknown level {stop!r}")
            ok = False
    if stops and spec.levels[0] not in stops:
        report((*loc, "release_stops"),
               f"release_stops must include the lowest level {spec.levels[0]!r}")
        ok = False
    return ok


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
