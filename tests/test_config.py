"""Settings: grouped by concern in the code, written with the flat RESPONDER_* names that
users already set, in the environment, the TOML config file and load_settings' keywords."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from responder.config import Settings, load_settings
from responder.config.source import groups_of
from responder.errors import ConfigError
from tests.conftest import ROOT


def flat_names() -> set[str]:
    groups = groups_of(Settings)
    names = {name for name in Settings.model_fields if name not in groups}
    for group in groups.values():
        names |= set(group.flat_names())
    return names


def test_environment_names_stay_flat(monkeypatch: pytest.MonkeyPatch) -> None:
    """The RESPONDER_* variables users set reach their concern's group, lists included."""
    for name, value in {
        "KAFKA_BOOTSTRAP": "broker:9092", "KAFKA_METRICS_GROUP": "m", "STEP_LEASE_S": "4",
        "STEP_DEADLINE_S": "7", "RULE_PACKS": "a, b", "RULES_DIR": "elsewhere",
        "WEBHOOK_TOKENS": "one,two", "INTAKE_QUEUE_MAX": "5", "CHECKPOINT_INTERVAL_S": "0",
        "AUDIT_ORIGIN": "example/log", "WEB_SESSION_TTL_S": "60", "METRICS_MAX_SERIES": "9",
        "STORM_WINDOW_S": "2", "LISTEN": "10.0.0.1:80", "PROMETHEUS_URL": "http://p:9090",
    }.items():
        monkeypatch.setenv(f"RESPONDER_{name}", value)
    s = load_settings(None)
    assert (s.kafka.bootstrap, s.kafka.metrics_group) == ("broker:9092", "m")
    assert (s.steps.lease_s, s.steps.deadline_s) == (4.0, 7.0)
    assert (s.rules.packs, s.rules.dir) == (["a", "b"], Path("elsewhere"))
    assert [t.get_secret_value() for t in s.access.webhook_tokens] == ["one", "two"]
    assert (s.intake.queue_max, s.audit.checkpoint_interval_s, s.audit.origin) == (
        5, 0.0, "example/log")
    assert (s.web.session_ttl_s, s.metric_rules.max_series, s.storm.window_s) == (60.0, 9, 2.0)
    assert (s.web.host, s.web.port, s.evidence.prometheus_url) == ("10.0.0.1", 80,
                                                                   "http://p:9090")


def test_the_config_file_keeps_its_flat_keys(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A TOML file with the documented flat keys loads, and the environment overrides it."""
    config = tmp_path / "responder.toml"
    config.write_text('listen = "127.0.0.1:7000"\nkafka_bootstrap = "k:1"\n'
                      'step_deadline_s = 12\nrule_packs = ["x"]\n'
                      'webhook_tokens = ["file-token"]\n'
                      '[[principals]]\nname = "ops"\nrole = "operator"\n'
                      f'token_sha256 = "{"a" * 64}"\n', encoding="utf-8")
    monkeypatch.setenv("RESPONDER_STEP_DEADLINE_S", "20")
    s = load_settings(config)
    assert (s.web.port, s.kafka.bootstrap, s.rules.packs) == (7000, "k:1", ["x"])
    assert s.steps.deadline_s == 20.0
    assert [p.name for p in s.access.principals] == ["ops"]
    assert [t.get_secret_value() for t in s.access.webhook_tokens] == ["file-token"]


def test_the_demo_config_file_loads() -> None:
    """examples/demo.toml, the file `make run` uses, still loads with its principals."""
    s = load_settings(ROOT / "examples" / "demo.toml")
    assert {p.role for p in s.access.principals} == {"viewer", "operator", "admin"}
    assert s.rules.dir == Path("rules")


def test_keywords_take_the_flat_names() -> None:
    """load_settings' keywords are the flat names; a nested name is refused, named."""
    s = load_settings(None, checkpoint_interval_s=0, data_dir=Path("d"), step_lease_s=3,
                      kafka_group="g")
    assert (s.audit.checkpoint_interval_s, s.data_dir, s.steps.lease_s) == (0.0, Path("d"), 3)
    assert s.kafka.group == "g"
    with pytest.raises(ConfigError, match=r"^RESPONDER_KAFKA: Extra inputs"):
        load_settings(None, kafka={"group": "g"})


def test_a_bad_value_names_the_flat_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused value names the variable the user set, not the place in the code."""
    monkeypatch.setenv("RESPONDER_STEP_LEASE_S", "0.1")
    with pytest.raises(ConfigError, match=r"^RESPONDER_STEP_LEASE_S: "):
        load_settings(None)
    monkeypatch.delenv("RESPONDER_STEP_LEASE_S")
    monkeypatch.setenv("RESPONDER_KAFKA_MAX_MESSAGE_BYTES", "0")
    with pytest.raises(ConfigError, match=r"^RESPONDER_KAFKA_MAX_MESSAGE_BYTES: "):
        load_settings(None)


def test_every_documented_setting_is_a_flat_name() -> None:
    """Each RESPONDER_* row of the README's Settings table is a setting responder reads."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `RESPONDER_")]
    documented = {m.lower() for row in rows
                  for m in re.findall(r"`RESPONDER_([A-Z0-9_]+)`", row.split("|")[1])}
    assert len(documented) > 30
    assert documented <= flat_names(), sorted(documented - flat_names())


def test_groups_hold_every_value_once() -> None:
    """No two groups claim one flat name, and the settings have as many values as names."""
    groups = groups_of(Settings)
    count = len(Settings.model_fields) - len(groups) + sum(
        len(g.model_fields) for g in groups.values())
    assert count == len(flat_names())
