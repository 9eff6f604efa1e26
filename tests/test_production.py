"""RESPONDER_ENV=production refuses every demo secret, in any case, and short secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.config import load_settings
from responder.errors import ConfigError, RuleError
from responder.production import MIN_SECRET_CHARS, target_problem
from responder.rules.in_force import load_table
from responder.rules.loader import load_rules
from tests.conftest import ROOT

GOOD = "a" * MIN_SECRET_CHARS + "-prod"


def production(**values: Any) -> None:
    load_settings(None, env="production", rules_dir=Path("rules"), **values)


def _places(secret: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("RESPONDER_WEBHOOK_TOKENS", {"webhook_tokens": [GOOD, secret]}),
        ("RESPONDER_VIEWER_TOKENS", {"viewer_tokens": [secret]}),
        ("RESPONDER_EVENT_SOURCES (edge)",
         {"event_sources": [{"name": "edge", "secrets": [GOOD, secret]}]}),
        ("RESPONDER_SINKS (hook) HMAC_SECRET",
         {"sinks": [{"name": "hook", "kind": "webhook", "url": "http://sink.invalid/",
                     "hmac_secret": secret}]}),
    ]


demo_secrets = st.builds(
    lambda prefix, sep, rest: prefix + sep + rest,
    st.sampled_from(["demo", "DEMO", "Demo", "dEmO", "demO"]), st.sampled_from("-_"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=MIN_SECRET_CHARS))


@settings(max_examples=40, derandomize=True, deadline=None)
@given(secret=demo_secrets, place=st.integers(0, 3))
def test_a_demo_secret_anywhere_is_refused_in_production(secret: str, place: int) -> None:
    """A demo-* secret, in any case, as a token, event-source secret or sink secret."""
    setting, values = _places(secret)[place]
    with pytest.raises(ConfigError, match="demo secrets") as e:
        production(**values)
    assert str(e.value).startswith(setting.split(" ")[0])
    load_settings(None, rules_dir=Path("rules"), **values)  # development takes them


@settings(max_examples=40, derandomize=True, deadline=None)
@given(secret=st.text(alphabet="abcdef0123456789", min_size=1, max_size=MIN_SECRET_CHARS - 1),
       place=st.integers(0, 3))
def test_a_short_secret_is_refused_in_production(secret: str, place: int) -> None:
    """A token or secret under the minimum length names its setting and the minimum."""
    setting, values = _places(secret)[place]
    with pytest.raises(ConfigError, match=f"shorter than {MIN_SECRET_CHARS}") as e:
        production(**values)
    assert str(e.value).startswith(setting.split(" ")[0])


def test_long_secrets_that_are_not_demo_values_run_in_production() -> None:
    """The checks refuse demo and short values only."""
    for _, values in _places(GOOD + "-2"):
        production(**values)
    production(web_session_secret="x" * 40)
    with pytest.raises(ConfigError, match="RESPONDER_WEB_SESSION_SECRET"):
        production(web_session_secret="Demo-" + "x" * 40)


def _exchange_env(token: str) -> dict[str, str]:
    return {"RESPONDER_EXCHANGE_URL": "http://127.0.0.1:9", "RESPONDER_EXCHANGE_TOKEN": token}


@settings(max_examples=40, derandomize=True, deadline=None)
@given(secret=demo_secrets)
def test_a_demo_target_token_is_refused_in_production(secret: str) -> None:
    """The token responder sends to a target is a secret too: a demo one, in any case, is
    named with its target."""
    table = load_rules(ROOT / "rules", env=_exchange_env(secret))
    problem = target_problem(table.targets.values())
    assert problem is not None and "demo token" in problem and "target exchange" in problem
    assert target_problem(load_rules(ROOT / "rules",
                                     env=_exchange_env(GOOD)).targets.values()) is None


def test_the_daemon_refuses_a_demo_target_token_in_production(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Start and reload load the table through one function, which production checks."""
    for name, value in _exchange_env("demo-exchange-admin-token").items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RuleError, match="target exchange: a demo token"):
        load_table(load_settings(None, env="production", rules_dir=ROOT / "rules",
                                 webhook_tokens=[GOOD]))
    assert load_table(load_settings(None, rules_dir=ROOT / "rules")).targets
