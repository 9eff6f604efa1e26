"""Bearer-token checks in constant time, against every configured token (for rotation)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from pydantic import SecretStr


class TokenSet:
    """A set of accepted bearer tokens; the comparison never short-circuits."""

    def __init__(self, tokens: Sequence[SecretStr]) -> None:
        self._tokens = [t.get_secret_value().encode() for t in tokens]

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def check(self, authorization: str | None) -> str | None:
        """None if accepted, else the reason: ``missing_token`` or ``bad_token``."""
        if not authorization:
            return "missing_token"
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return "missing_token"
        candidate = given.strip().encode()
        accepted = False
        for token in self._tokens:
            accepted |= hmac.compare_digest(candidate, token)
        return None if accepted else "bad_token"
