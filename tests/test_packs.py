"""Rule packs: opt-in by setting, all valid together, and a pack that pages without acting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from responder.errors import RuleError
from responder.evidence.pages import next_page
from responder.rules.loader import load_rules
from responder.rules.signing import keygen, sign

ROOT = Path(__file__).resolve().parent.parent
PACKS = ("api-alarms", "briefcase", "edge", "gateway-ledger")


def test_packs_are_off_unless_enabled() -> None:
    """Without RESPONDER_RULE_PACKS only the files of no pack load, and the hash is theirs."""
    base = load_rules(ROOT / "rules", resolve_secrets=False)
    assert not any(r.file.endswith(("edge.yaml", "briefcase.yaml")) for r in base.rules)
    edge = load_rules(ROOT / "rules", resolve_secrets=False, packs=["edge"])
    assert {r.id for r in edge.rules} - {r.id for r in base.rules} == {
        "edge-replay-guard-unavailable", "edge-denial-spike", "edge-tenant-mismatch",
        "edge-tenant-leakage"}
    assert edge.bundle_hash != base.bundle_hash


def test_every_pack_loads_together() -> None:
    """All packs at once form one valid table: no clashing names."""
    table = load_rules(ROOT / "rules", resolve_secrets=False, packs=["all"])
    files = {Path(f).name for f in table.files}
    assert {f"{p}.yaml" for p in PACKS} <= files


def test_an_unknown_pack_is_refused() -> None:
    """A misspelt pack name is an error naming the packs that exist, not a silent no-op."""
    with pytest.raises(RuleError, match="no rule file declares pack edgy"):
        load_rules(ROOT / "rules", resolve_secrets=False, packs=["edgy"])


def test_an_enabled_pack_needs_its_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """An enabled pack's target token must be set, like any target's."""
    monkeypatch.setenv("RESPONDER_EXCHANGE_TOKEN", "t")
    monkeypatch.delenv("RESPONDER_EDGE_TOKEN", raising=False)
    with pytest.raises(RuleError, match="RESPONDER_EDGE_TOKEN is not set"):
        load_rules(ROOT / "rules", packs=["edge"])


def test_the_signature_covers_disabled_packs(tmp_path: Path) -> None:
    """In strict mode a change to a pack that is not enabled still refuses the table."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    private, public = keygen(tmp_path / "k")
    from responder.rules.loader import bundle_hash, rule_files

    sign(rules, bundle_hash(rules, rule_files(rules)), private)
    load_rules(rules, resolve_secrets=False, public_keys=[public])
    edge = rules / "edge.yaml"
    edge.write_text(edge.read_text() + "\n# one more line\n")
    with pytest.raises(RuleError, match="signature does not verify"):
        load_rules(rules, resolve_secrets=False, public_keys=[public])


def test_a_paging_rule_pages_without_containment() -> None:
    """A rule with page: true pages on its first bundle even though nothing was applied."""
    bundle = {"incident": {"id": 7, "severity": "sev2", "rule_id": "api-5xx-sustained",
                           "scope": "", "correlation_id": None},
              "actions": [], "alerts": [], "rule": {"id": "api-5xx-sustained", "page": True}}
    page = next_page(bundle, None, "")
    assert page is not None and (page.event, page.key) == ("opened", "page-7-opened")
    bundle["rule"] = {"id": "api-throttles", "page": False}
    assert next_page(json.loads(json.dumps(bundle)), None, "") is None
