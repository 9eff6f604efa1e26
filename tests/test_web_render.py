"""The page's templates and time formatting, rendered without a daemon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from responder.auth import Principal
from responder.web.render import age, make_env, utc
from responder.web.session import Session

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
HOSTILE = '"><script>alert(1)</script>'


def test_times_are_utc_with_their_age() -> None:
    """Times print in UTC whatever their offset, with the age in its largest unit."""
    assert utc("2026-11-23T09:30:00+01:00") == "2026-11-23 08:30:00 UTC"
    assert utc(None) == ""
    assert age(NOW - timedelta(seconds=5), NOW) == "5 s ago"
    assert age(NOW - timedelta(minutes=3, seconds=59), NOW) == "3 min ago"
    assert age(NOW - timedelta(days=2, hours=5), NOW) == "2 d ago"
    assert age(NOW + timedelta(minutes=15), NOW) == "in 15 min"
    assert age("not a time", NOW) == ""


def incident(**overrides: Any) -> dict[str, Any]:
    return {"id": 7, "opened_at": NOW, "severity": "sev1", "rule_id": "split-brain",
            "status": "open", "controls": [], "evidence": None, "deliveries": {},
            "outcomes": {"applied": 0, "verified": 0, "failed": 0}, **overrides}


def render_incidents(rows: list[dict[str, Any]]) -> str:
    session = Session(Principal("vera", "viewer"), "csrf-token", "sid", 0.0)
    return make_env().get_template("incidents.html").render(
        session=session, incidents=rows, older=None, nav="incidents")


def test_incident_list_states_what_was_verified() -> None:
    """Each incident says whether its applied steps were read back, partly, not at all, or
    failed."""
    html = render_incidents([
        incident(id=1, outcomes={"applied": 2, "verified": 2, "failed": 0}),
        incident(id=2, outcomes={"applied": 3, "verified": 2, "failed": 0}),
        incident(id=3, outcomes={"applied": 1, "verified": 0, "failed": 0}),
        incident(id=4, outcomes={"applied": 0, "verified": 0, "failed": 1}),
    ])
    rows = html.split("<tbody>")[1].split("</tr>")
    assert '"tag ok">verified' in rows[0]
    assert "2/3 verified" in rows[1]
    assert "no read-back" in rows[2]
    assert "1 failed" in rows[3]


def test_correlation_id_is_shown_when_a_row_has_one() -> None:
    """An incident carrying correlation_id shows it; one without leaves the cell blank."""
    html = render_incidents([incident(id=1, correlation_id="c0ffee-42"), incident(id=2)])
    rows = html.split("<tbody>")[1].split("</tr>")
    assert "<code>c0ffee-42</code>" in rows[0]
    assert "<code></code>" in rows[1]


def test_hostile_values_render_as_text() -> None:
    """Markup in a rule id, severity, control key or correlation id is escaped."""
    html = render_incidents([incident(
        rule_id=HOSTILE, severity=HOSTILE, correlation_id=HOSTILE,
        controls=[{"control": "symbol-mode", "key": HOSTILE, "level": "HARD_HALT",
                   "status": "done"}])])
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'class="sev sev-&#34;&gt;&lt;script&gt;' in html


def test_a_record_correlation_id_is_found_at_the_top_or_in_its_detail() -> None:
    """Action records show a correlation id wherever the record carries it, blank if none."""
    from responder.web.views import correlation

    assert correlation({"correlation_id": "top-1", "detail": {}}) == "top-1"
    assert correlation({"detail": {"correlation_id": "inner-2"}}) == "inner-2"
    assert correlation({"detail": None}) == ""
