"""What ``RESPONDER_ENV=production`` refuses: demo secrets and secrets too short to guess at.

Every secret responder checks or signs with counts: webhook and viewer tokens, event-source
secrets, sink HMAC secrets and the web session secret; so do the tokens it sends to targets,
which the rule table resolves. A demo value is one starting with
``demo-`` or ``demo_`` in any case; demo principals are known by their token hashes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from responder.config import Settings
    from responder.rules.table import Target

MIN_SECRET_CHARS = 16
"""Shorter tokens and secrets are refused in production (``openssl rand -hex 16`` is 32)."""
DEMO_PREFIXES = ("demo-", "demo_")


def is_demo(value: str) -> bool:
    return value.lower().startswith(DEMO_PREFIXES)


def _secrets(settings: Settings) -> Iterator[tuple[str, Iterable[SecretStr]]]:
    yield "webhook_tokens", settings.webhook_tokens
    yield "viewer_tokens", settings.viewer_tokens
    for source in settings.event_sources:
        yield f"event_sources ({source.name})", source.secrets
    for sink in settings.sinks:
        if sink.hmac_secret is not None:
            yield f"sinks ({sink.name}) hmac_secret", [sink.hmac_secret]
    if settings.web_session_secret is not None:
        yield "web_session_secret", [settings.web_session_secret]


def production_problem(settings: Settings, demo_hashes: set[str]) -> str | None:
    """Why these settings may not run in production, naming the setting; None if they may."""
    if any(p.token_sha256.lower() in demo_hashes for p in settings.principals):
        return "RESPONDER_PRINCIPALS: demo principals are refused when RESPONDER_ENV=production"
    for name, secrets in _secrets(settings):
        values = [s.get_secret_value() for s in secrets]
        setting = f"RESPONDER_{name.upper()}"
        if any(is_demo(v) for v in values):
            return (f"{setting}: demo secrets (demo-*) are refused when"
                    " RESPONDER_ENV=production")
        if any(len(v) < MIN_SECRET_CHARS for v in values):
            return (f"{setting}: secrets shorter than {MIN_SECRET_CHARS} characters are"
                    " refused when RESPONDER_ENV=production")
    return None


def target_problem(targets: Iterable[Target]) -> str | None:
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
