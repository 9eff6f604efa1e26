"""The rule table a daemon puts in force: the configured directory, packs and keys, with
production's extra refusal of the demo target tokens."""

from __future__ import annotations

from responder.config import Settings
from responder.errors import RuleError, RuleProblem
from responder.production import target_problem
from responder.rules.loader import load_rules
from responder.rules.table import RuleTable


def load_table(s: Settings) -> RuleTable:
    """The rule table in force for these settings; production also refuses demo target tokens."""
    table = load_rules(s.rules.dir, public_keys=s.rules.verify_keys, packs=s.rules.packs)
    if s.env == "production" and (problem := target_problem(table.targets.values())):
        raise RuleError([RuleProblem(str(s.rules.dir), 0, problem)])
    return table
