"""Alertmanager matcher syntax and semantics."""

from __future__ import annotations

import pytest

from responder.rules.matchers import MatcherSyntaxError, parse_matcher, parse_matchers


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('alertname="LedgerInvariantViolation"', {"alertname": "LedgerInvariantViolation"}, True),
        ('alertname="LedgerInvariantViolation"', {"alertname": "Other"}, False),
        ('severity=~"sev1|critical"', {"severity": "critical"}, True),
        ('severity=~"sev1|critical"', {"severity": "sev10"}, False),  # anchored
        ('severity=~"sev1|critical"', {"severity": "xsev1"}, False),
        ('symbol!=""', {"symbol": "BTC-USD"}, True),
        ('symbol!=""', {}, False),  # a missing label is ""
        ('symbol=""', {}, True),
        ('env!~"dev.*"', {"env": "prod"}, True),
        ('env!~"dev.*"', {"env": "dev-1"}, False),
        ("team=exchange", {"team": "exchange"}, True),  # unquoted value
        (r'summary="say \"hi\""', {"summary": 'say "hi"'}, True),
    ],
)
def test_matcher_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    """Each operator matches as Alertmanager's does, anchored, with missing labels as ""."""
    assert parse_matcher(text).matches(labels) is expected


def test_group_syntax() -> None:
    """A {a="b", c=~"d"} group parses into its matchers, commas inside quotes kept."""
    matchers = parse_matchers('{alertname="X", summary="a,b", sev=~"1|2"}')
    assert [str(m) for m in matchers] == ['alertname="X"', 'summary="a,b"', 'sev=~"1|2"']


@pytest.mark.parametrize("text", ["alertname", '="x"', 'a=~"("', 'a="x', 'a="x\\q"', "1a=b"])
def test_bad_matchers_are_refused(text: str) -> None:
    """Malformed matchers raise MatcherSyntaxError rather than matching anything."""
    with pytest.raises(MatcherSyntaxError):
        parse_matcher(text)
