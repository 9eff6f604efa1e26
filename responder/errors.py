"""Every error responder raises descends from one root.

    ResponderError
    ├── ConfigError            a setting is invalid (names the setting)
    ├── RuleError              the rule table is invalid (carries file:line problems)
    ├── FixtureError           a rule-test fixture file is missing or invalid (file:line)
    ├── StoreError             the store cannot be reached or refused a write
    │   ├── StoreUnavailable   transient: answer 503, retry later
    │   └── StoreRefused       permanent: the data itself (out of range, invalid); not retried
    ├── ActionError            an admin call did not confirm the level
    │   ├── ActionTransientError   connection error, timeout, 5xx: retried
    │   └── ActionPermanentError   4xx or a malformed answer: not retried
    ├── AuditChainError        the action log does not verify
    │   └── CheckpointInvalid  a signed checkpoint or a proof is refused
    └── ReplayInputError       a replay input (file line, stored alert) cannot be read
"""

from __future__ import annotations

from dataclasses import dataclass


class ResponderError(Exception):
    """Root of every error responder raises on purpose."""


class ConfigError(ResponderError):
    """A setting is invalid; the message names it."""


@dataclass(frozen=True)
class RuleProblem:
    """One problem in the rule table, located by file and line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RuleError(ResponderError):
    """The rule table is invalid."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class FixtureError(ResponderError):
    """A rule-test fixture cannot be read; says "fixture" and the file and line."""

    def __init__(self, file: str, line: int, message: str) -> None:
        self.problem = RuleProblem(file, line, message)
        where = f"{file}:{line}" if line else file
        super().__init__(f"fixture {where}: {message}")


def explain(error: ResponderError) -> str:
    """What a command prints for an error: one line, or a rule table's problems one per
    line when there are several."""
    if isinstance(error, RuleError) and len(error.problems) == 1:
        p = error.problems[0]
        where = f"{p.file}:{p.line}" if p.line else p.file
        return f"responder: invalid rules: {where}: {p.message}"
    if isinstance(error, RuleError):
        return "responder: invalid rules:\n" + "\n".join(f"  {p}" for p in error.problems)
    return f"responder: {error}"


class StoreError(ResponderError):
    """The store refused or failed an operation."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; the caller should retry later."""


class StoreRefused(StoreError):
    """The store refused a unit for its data (an integer past its column, invalid text):
    the same unit will be refused again, so it is bad input, not an outage."""


class ActionError(ResponderError):
    """An admin call did not confirm the requested level."""


class ActionTransientError(ActionError):
    """A failure worth retrying: connection error, timeout or 5xx."""


class ActionPermanentError(ActionError):
    """A failure that a retry will not fix: 4xx or a malformed answer."""


class AuditChainError(ResponderError):
    """The action log hash chain is broken at a named record."""


class CheckpointInvalid(AuditChainError):
    """A signed checkpoint, a key or a proof is refused; the message says which and why."""


class ReplayInputError(ResponderError):
    """A replay input cannot be read; the message names the file and line or the record."""
