"""Who is calling: bearer tokens checked in constant time, mapped to a principal and a role.

Webhook tokens are a plain set (Alertmanager holds the token). People and scripts are
principals configured by the SHA-256 of their token, never the token itself, with one of
three roles: viewer (read), operator (contain, release, approve), admin (modes, break-glass).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip()


TOKEN_TAG_CHARS = 16


def token_sha256(token: str) -> str:
    """The form in which a principal's token is configured."""
    return hashlib.sha256(_raw(token)).hexdigest()


def _raw(text: str) -> bytes:
    """A header value's own bytes: aiohttp keeps bytes that are not UTF-8 as lone
    surrogates, which a plain ``encode()`` refuses (that was a 500 before any check)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate of another kind (a decoded form field)
        return text.encode("utf-8", "surrogatepass")


def challenge(reason: str) -> dict[str, str]:
    """The headers of a 401 for a bearer token (RFC 6750): the scheme, and whether the
    token given was refused or none was given."""
    value = 'Bearer realm="responder"'
    if reason == "bad_token":
        value += ', error="invalid_token"'
    return {"WWW-Authenticate": value}


class TokenSet:
    """A set of accepted bearer tokens; the comparison never short-circuits."""

    def __init__(self, tokens: Sequence[SecretStr]) -> None:
        self._tokens = [t.get_secret_value().encode() for t in tokens]

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def check(self, authorization: str | None) -> str | None:
        """None if accepted, else the reason: ``missing_token`` or ``bad_token``."""
        given = _bearer(authorization)
        if given is None:
            return "missing_token"
        candidate = _raw(given)
        accepted = False
        for token in self._tokens:
            accepted |= hmac.compare_digest(candidate, token)
        return None if accepted else "bad_token"


@dataclass(frozen=True)
class Principal:
    """A named caller and its role."""

    name: str
    role: Role

    def can(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class Principals:
    """Principals by token hash; authentication compares against every entry."""

    def __init__(self, entries: Iterable[tuple[str, Role, str]]) -> None:
        self._entries = [(Principal(name, role), digest.lower()) for name, role, digest in entries]

    def holding(self, role: Role) -> list[str]:
        """Names of the principals that may act as this role (who can release, say)."""
        return sorted({p.name for p, _ in self._entries if p.can(role)})

    def named(self, name: str) -> Principal | None:
        """The principal configured under this name now (a web session re-checks its role)."""
        return next((p for p, _ in self._entries if p.name == name), None)

    def still_holding(self, name: str, token_tag: str) -> Principal | None:
        """The principal under this name if the token it logged in with (known by a tag of
        its hash) is still configured: rotating a leaked token ends its web sessions."""
        if len(token_tag) != TOKEN_TAG_CHARS:
            return None
        return next((p for p, digest in self._entries
                     if p.name == name and hmac.compare_digest(digest[:TOKEN_TAG_CHARS],
                                                               token_tag)), None)

    def authenticate(self, authorization: str | None) -> Principal | str:
        """The principal, or the reason it is refused (``missing_token``, ``bad_token``)."""
        given = _bearer(authorization)
        if given is None:
            return "missing_token"
        digest = token_sha256(given)
        found: Principal | None = None
        for principal, expected in self._entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = principal
        return found if found is not None else "bad_token"
