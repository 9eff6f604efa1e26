"""Alertmanager's label matcher syntax: ``name="value"``, ``!=``, ``=~`` and ``!~``.

As in Alertmanager, regexes are anchored at both ends and a missing label has the value "".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Op = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(
    r"""^\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$""",
    re.DOTALL,
)
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}


class MatcherSyntaxError(ValueError):
    """A matcher string does not follow Alertmanager's syntax."""


@dataclass(frozen=True)
class Matcher:
    """One compiled label matcher."""

    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def _unquote(raw: str) -> str:
    if not (len(raw) >= 2 and raw[0] == raw[-1] == '"'):
        if '"' in raw:
            raise MatcherSyntaxError(f"unbalanced quotes in value {raw!r}")
        return raw
    out: list[str] = []
    chars = iter(raw[1:-1])
    for ch in chars:
        if ch == '"':
            raise MatcherSyntaxError(f"unescaped quote in value {raw!r}")
        if ch == "\\":
            nxt = next(chars, None)
            if nxt is None or nxt not in _ESCAPES:
                raise MatcherSyntaxError(f"invalid escape in value {raw!r}")
            out.append(_ESCAPES[nxt])
        else:
            out.append(ch)
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher such as ``severity=~"sev1|critical"``."""
    m = _MATCHER.match(text)
    if m is None:
        raise MatcherSyntaxError(f"not a matcher: {text!r} (expected name=\"value\")")
    op: Op = m.group("op")  # type: ignore[assignment]
    value = _unquote(m.group("value"))
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as e:
            raise MatcherSyntaxError(f"invalid regex {value!r}: {e}") from e
    return Matcher(m.group("name"), op, value, regex)


def parse_matchers(text: str) -> list[Matcher]:
    """Parse a ``{a="b", c=~"d"}`` group or a single matcher."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    return [parse_matcher(part) for part in _split_commas(body) if part.strip()]


def _split_commas(body: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    in_quotes = escaped = False
    for ch in body:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif ch == "," and not in_quotes:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts
