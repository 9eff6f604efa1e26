"""Signed session cookies for the web page, and the CSRF token each session carries.

A cookie is ``base64url(json).hex(hmac-sha256)``: the name, role, CSRF token, session id and
expiry, signed with a secret from settings (or one made per process). It holds no API token.
Each request re-reads the principal by name, so a removed or demoted principal loses its
session at once. Logout revokes the session id in the store (every replica refuses it from
then on, restarts included) until the cookie would have expired anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from responder.auth import TOKEN_TAG_CHARS, Principal, Principals

COOKIE = "responder_session"
LOGIN_COOKIE = "responder_login"
MAX_COOKIE_CHARS = 4096


@dataclass(frozen=True)
class Session:
    """A logged-in principal: who, the CSRF token for its forms, and when it ends."""

    principal: Principal
    csrf: str
    sid: str
    expires_at: float


class Sessions:
    """Issues and checks signed session cookies."""

    def __init__(self, secret: bytes | None, ttl_s: float) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self.ttl_s = ttl_s
        self._revoked: dict[str, float] = {}

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()

    def issue(self, principal: Principal, token_digest: str,
              now: float | None = None) -> tuple[Session, str]:
        """A new session and its cookie value; ``token_digest`` is the SHA-256 of the token
        it logged in with (the cookie keeps a tag of it, never the token)."""
        now = time.time() if now is None else now
        session = Session(principal, secrets.token_urlsafe(32), secrets.token_urlsafe(16),
                          now + self.ttl_s)
        payload = json.dumps({"n": principal.name, "c": session.csrf, "s": session.sid,
                              "e": session.expires_at, "t": token_digest[:TOKEN_TAG_CHARS]},
                             separators=(",", ":")).encode()
        encoded = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return session, f"{encoded}.{self._sign(encoded.encode())}"

    def check(self, cookie: str | None, principals: Principals,
              now: float | None = None) -> Session | None:
        """The session a cookie carries, or None if it is absent, forged, expired or revoked,
        or its principal is no longer configured."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS:
            return None
        encoded, _, signature = cookie.rpartition(".")
        expected = self._sign(encoded.encode(errors="replace")).encode()
        if not hmac.compare_digest(expected, signature.encode(errors="replace")):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
            name, csrf, sid, tag = data["n"], data["c"], data["s"], data["t"]
            expires_at = float(data["e"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        now = time.time() if now is None else now
        if expires_at <= now or sid in self._revoked:
            return None
        principal = (principals.still_holding(name, tag)
                     if isinstance(name, str) and isinstance(tag, str) else None)
        if principal is None or not isinstance(csrf, str) or not isinstance(sid, str):
            return None
        return Session(principal, csrf, sid, expires_at)

    def revoke(self, session: Session, now: float | None = None) -> None:
        """Refuse this session in this process at once (the store is told by the caller)."""
        now = time.time() if now is None else now
        self._revoked = {sid: t for sid, t in self._revoked.items() if t > now}
        self._revoked[session.sid] = session.expires_at


def same_token(expected: str, given: object) -> bool:
    """A CSRF check in constant time; anything but a non-empty string fails."""
    return (isinstance(given, str) and bool(expected)
            and hmac.compare_digest(expected.encode(), given.encode(errors="replace")))
