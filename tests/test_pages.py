"""Pages sent to people: one per event, saying what was done, what was not, why, and where."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.exchange import Faults
from responder.daemon import Daemon
from responder.evidence.pages import TROUBLE, next_page
from tests.conftest import (
    ADMIN_TOKEN,
    DaemonFactory,
    Exchange,
    fixture_bytes,
    idle,
    post_alerts,
    query,
    wait_for,
)
from tests.test_outbox import Receiver, serve

PUBLIC = "https://responder.example"


@pytest.fixture
async def pager() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    url, runner = await serve(receiver)
    yield receiver, url
    await runner.cleanup()


async def paging_daemon(make_daemon: DaemonFactory, url: str) -> Daemon:
    return await make_daemon(public_url=PUBLIC, sinks=[
        {"name": "hook", "kind": "webhook", "url": url, "bundles": False, "pages": True}])


def pages(receiver: Receiver) -> list[dict[str, Any]]:
    return [p for _, kind, p in receiver.accepted if kind == "page"]


SEALED_ALL_SQL = """
SELECT coalesce(bool_and(e.actions_seq >= r.last), false) AS sealed
FROM (SELECT incident_id, max(seq) AS last FROM action_log
      WHERE incident_id IS NOT NULL AND kind <> 'evidence_sealed' GROUP BY incident_id) r
LEFT JOIN LATERAL (SELECT actions_seq FROM evidence WHERE incident_id = r.incident_id
                   ORDER BY version DESC LIMIT 1) e ON true
"""


async def settled(daemon: Daemon, database: str) -> None:
    """Containment ended, every incident's records sealed, and every delivery made: no page
    is owed that has not been sent."""
    await idle(daemon)

    async def quiet() -> bool:
        [sealed] = await query(database, SEALED_ALL_SQL)
        [left] = await query(database, "SELECT count(*) AS n FROM outbox"
                                        " WHERE status <> 'delivered'")
        return bool(sealed["sealed"]) and left["n"] == 0

    await wait_for(quiet, what="evidence sealed and pages delivered")


async def test_a_paging_sev1_sends_exactly_one_page(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str, rules_dir: Path,
    pager: tuple[Receiver, str],
) -> None:
    """A SEV1 rule with page: true pages once: what it did, why, the runbook, the link."""
    spot = rules_dir / "spot-exchange.yaml"
    spot.write_text(spot.read_text().replace(
        "    on_failure: {control: global-mode, level: SOFT_HALT}\n"
        "    # More than 20", "    on_failure: {control: global-mode, level: SOFT_HALT}\n"
        "    page: true\n    # More than 20", 1))
    receiver, url = pager
    daemon = await paging_daemon(make_daemon, url)
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await settled(daemon, database)
    [page] = pages(receiver)
    assert page["reason"] == "opened"
    lines = page["summary"].splitlines()
    assert lines[0].startswith("[SEV1] ledger-invariant-violation (symbol=BTC-USD): contained")
    assert lines[1] == "Done: withdrawals=HALTED; symbol-mode[BTC-USD]=CANCEL_ONLY"
    assert "Why: invariant_violation_total > 0" in lines
    assert "Runbook: https://runbooks.example/3.1" in lines
    assert lines[-1] == f"Incident: {PUBLIC}/incidents/1"
    assert not page["not_done"]


async def test_a_failed_step_and_its_escalation_are_one_page(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    exchange: Exchange, pager: tuple[Receiver, str],
) -> None:
    """A step refused by the target, then escalated: one page naming both."""
    receiver, url = pager
    exchange.state.faults = Faults(fail_next=1, fail_status=409)
    daemon = await paging_daemon(make_daemon, url)
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await settled(daemon, database)
    [page] = pages(receiver)
    assert ": escalated" in page["summary"].splitlines()[0]
    assert any(line.startswith("withdrawals -> HALTED failed") for line in page["not_done"])
    assert "escalated to global-mode -> SOFT_HALT" in page["not_done"]
    assert "global-mode=SOFT_HALT (escalation)" in page["done"]


async def test_a_refused_key_is_said_in_the_page(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    pager: tuple[Receiver, str],
) -> None:
    """A symbol label that fails the key pattern: the page says so and what was done instead."""
    receiver, url = pager
    daemon = await paging_daemon(make_daemon, url)
    await post_alerts(http, daemon, fixture_bytes("firing-single.json").replace(
        b'"symbol": "BTC-USD"', b'"symbol": "eth/usd"'))
    await settled(daemon, database)
    [page] = pages(receiver)
    assert any("value 'eth/usd' failed the key pattern of symbol-mode" in line
               for line in page["not_done"])
    assert "global-mode=SOFT_HALT (escalation)" in page["done"] or any(
        line.startswith("global-mode=SOFT_HALT") for line in page["done"])


async def test_a_truncated_group_says_the_scope_was_unseen(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    pager: tuple[Receiver, str],
) -> None:
    """Alerts of a truncated group: each incident's page says the scope is unknown."""
    receiver, url = pager
    daemon = await paging_daemon(make_daemon, url)
    await post_alerts(http, daemon, fixture_bytes("firing-group-truncated.json"))
    await settled(daemon, database)
    sent = pages(receiver)
    assert sent and len(sent) == len({p["incident_id"] for p in sent})
    for page in sent:
        assert any("not delivered (truncated): scope unknown" in line
                   for line in page["not_done"]), page


async def test_resolved_but_held_is_its_own_page(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    pager: tuple[Receiver, str],
) -> None:
    """The alert resolving while containment is held pages once more, saying what next."""
    receiver, url = pager
    daemon = await paging_daemon(make_daemon, url)
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await settled(daemon, database)
    await post_alerts(http, daemon, fixture_bytes("resolved-single.json"))
    await wait_for(lambda: len(pages(receiver)) == 2, what="the resolved page")
    await settled(daemon, database)
    first, second = pages(receiver)
    assert (first["reason"], second["reason"]) == ("opened", "resolved")
    assert "resolved, containment held" in second["summary"].splitlines()[0]
    assert second["done"] == ["alert resolved; containment held: release when safe"]
    assert len(pages(receiver)) == 2


async def test_a_dry_run_sev1_pages_what_it_would_have_done(
    make_daemon: DaemonFactory, http: aiohttp.ClientSession, database: str,
    pager: tuple[Receiver, str],
) -> None:
    """In dry-run a SEV1 still pages once, saying nothing was called and what would have been."""
    receiver, url = pager
    daemon = await paging_daemon(make_daemon, url)
    async with http.post(f"http://127.0.0.1:{daemon.port}/v1/mode",
                         json={"mode": "dry_run", "reason": "rehearsal"},
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
        assert resp.status == 200
    await post_alerts(http, daemon, fixture_bytes("firing-single.json"))
    await settled(daemon, database)
    [page] = pages(receiver)
    assert ": not contained (automation not enforcing)" in page["summary"].splitlines()[0]
    assert "would set withdrawals=HALTED (dry_run: nothing called)" in page["not_done"]
    assert page["done"] == []


def _bundle(**rule: Any) -> dict[str, Any]:
    return {"incident": {"id": 3, "severity": "sev2", "rule_id": "r", "scope": "",
                         "correlation_id": None},
            "rule": {"id": "r", "page": True, "description": "d", **rule},
            "alerts": [{"alert": {"annotations": {}, "generatorURL": ""}}],
            "actions": [{"seq": 1, "kind": "intent", "step_id": 9, "detail": {}}]}


def test_no_page_before_the_steps_end_and_the_rule_runbook_is_a_fallback() -> None:
    """A step still running holds the page back; with no runbook_url the rule's runbook shows."""
    bundle = _bundle(runbook="docs/runbooks/api-alarms.md")
    assert next_page(bundle, None, PUBLIC) is None
    bundle["actions"].append({"seq": 2, "kind": "outcome", "step_id": 9, "control": "c",
                              "key": "", "detail": {"status": "applied", "level": "ON"}})
    page = next_page(json.loads(json.dumps(bundle)), None, PUBLIC)
    assert page is not None
    assert (page.runbook, page.why, page.through_seq) == ("docs/runbooks/api-alarms.md", "d", 2)
    assert next_page(bundle, 2, PUBLIC) is None  # nothing new since the last page


OPS = st.lists(st.one_of(
    st.sampled_from(["intent", "applied", "failed", "seal", "alert_resolved", "notify_only"]),
    st.sampled_from(sorted(TROUBLE))), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ops=OPS, severity=st.sampled_from(["sev1", "sev2"]), rule_pages=st.booleans())
def test_every_event_is_paged_once(ops: list[str], severity: str, rule_pages: bool) -> None:
    """Whatever records arrive and whenever seals fall: no page twice, none before the steps
    end, every trouble record in exactly one page, and a SEV1 (or page: true) pages."""
    incident = {"id": 1, "severity": severity, "rule_id": "r", "scope": "",
                "correlation_id": None}
    actions: list[dict[str, Any]] = []
    open_steps: list[int] = []
    keys: set[str] = set()
    paged_seq: int | None = None
    covered: list[tuple[int, int]] = []

    def add(kind: str, **fields: Any) -> None:
        actions.append({"seq": len(actions) + 1, "kind": kind, "control": "c", "key": "",
                        "step_id": None, "detail": {}, **fields})

    def seal() -> None:
        nonlocal paged_seq
        bundle = {"incident": incident, "rule": {"id": "r", "page": rule_pages},
                  "alerts": [], "actions": [dict(a) for a in actions]}
        page = next_page(bundle, paged_seq, PUBLIC)
        if page is None:
            return
        assert not open_steps, "paged before the steps ended"
        assert page.key not in keys, "the same event paged twice"
        keys.add(page.key)
        assert page.through_seq > (paged_seq or 0)
        covered.append((paged_seq or 0, page.through_seq))
        paged_seq = page.through_seq

    add("incident_opened")
    for op in ops:
        if op == "seal":
            seal()
        elif op == "intent":
            open_steps.append(len(actions) + 1)
            add("intent", step_id=open_steps[-1])
        elif op in ("applied", "failed") and open_steps:
            add("outcome", step_id=open_steps.pop(0),
                detail={"status": op, "level": "L", "error": "e"})
        elif op == "alert_resolved":
            add(op, detail={"note": "resolved, containment held"})
        elif op not in ("applied", "failed"):
            add(op, detail={})
    while open_steps:
        add("outcome", step_id=open_steps.pop(0), detail={"status": "applied", "level": "L"})
    seal()
    for r in actions:
        if r["kind"] in TROUBLE:
            assert sum(lo < r["seq"] <= hi for lo, hi in covered) == 1, r
    assert sum(k.endswith("-opened") for k in keys) == (
        1 if severity == "sev1" or rule_pages or any(a["kind"] in TROUBLE for a in actions)
        else 0)


def test_a_rule_may_declare_its_runbook(rules_dir: Path) -> None:
    """`runbook:` is an optional rule field; the table keeps it for pages and evidence."""
    from responder.rules.loader import load_rules

    spot = rules_dir / "spot-exchange.yaml"
    spot.write_text(spot.read_text().replace(
        "    severity: sev1\n", "    severity: sev1\n"
        "    runbook: docs/runbooks/spot-exchange.md#31-ledger\n", 1))
    table = load_rules(rules_dir, resolve_secrets=False)
    rule = table.rule("ledger-invariant-violation")
    assert rule is not None and rule.runbook == "docs/runbooks/spot-exchange.md#31-ledger"
    assert table.rule("split-brain").runbook is None  # type: ignore[union-attr]
