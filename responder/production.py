"""What ``RESPONDER_ENV=production`` refuses: demo secrets and secrets too short to guess at.

Every secret responder checks or signs with counts: webhook and viewer tokens, event-source
secrets, sink HMAC secrets and the web session secret; so do the tokens it sends to targets,
which the rule table resolves. A demo value is one starting with
``demo-`` or ``demo_`` in any case; demo principals are known by their token hashes.

A leaf: the settings hand in their named secrets, and targets are anything with a name and
a token, so neither config nor the rules are imported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from pydantic import SecretStr

MIN_SECRET_CHARS = 16
"""Shorter tokens and secrets are refused in production (``openssl rand -hex 16`` is 32)."""
DEMO_PREFIXES = ("demo-", "demo_")

NamedSecrets = Iterable[tuple[str, Iterable[SecretStr]]]
"""Secrets by the setting they come from, as ``webhook_tokens`` or ``sinks (page) hmac_secret``."""


class TokenHolder(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def token(self) -> SecretStr | None: ...


def is_demo(value: str) -> bool:
    return value.lower().startswith(DEMO_PREFIXES)


def production_problem(secrets: NamedSecrets, principal_hashes: Iterable[str],
                       demo_hashes: set[str]) -> str | None:
    """Why these settings may not run in production, naming the setting; None if they may."""
    if any(h.lower() in demo_hashes for h in principal_hashes):
        return "RESPONDER_PRINCIPALS: demo principals are refused when RESPONDER_ENV=production"
    for name, named in secrets:
        values = [s.get_secret_value() for s in named]
        setting = f"RESPONDER_{name.upper()}"
        if any(is_demo(v) for v in values):
            return (f"{setting}: demo secrets (demo-*) are refused when"
                    " RESPONDER_ENV=production")
        if any(len(v) < MIN_SECRET_CHARS for v in values):
            return (f"{setting}: secrets shorter than {MIN_SECRET_CHARS} characters are"
                    " refused when RESPONDER_ENV=production")
    return None


def target_problem(targets: Iterable[TokenHolder]) -> str | None:
    """Why a rule table's target tokens may not be used in production; None if they may."""
    for target in targets:
        if target.token is None:
            continue
        token = target.token.get_secret_value()
        if is_demo(token):
            return (f"target {target.name}: a demo token (demo-*) is refused when"
                    " RESPONDER_ENV=production")
        if len(token) < MIN_SECRET_CHARS:
            return (f"target {target.name}: a token shorter than {MIN_SECRET_CHARS} characters"
                    " is refused when RESPONDER_ENV=production")
    return None
