"""One redaction rule set, shared by the log processor and everything that records requests."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

SECRET_KEY_PATTERN = re.compile(
    r"(authorization|cookie|token|secret|password|passwd|api[-_]?key|signature)", re.IGNORECASE
)
TOKEN_SHAPED = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s@]+@")
# A header line quoted in a library's message ("Got more than 8190 bytes when reading:
# b'Authorization: ...'"): the value of a secret-named header, to the end of the line.
SECRET_HEADER_LINE = re.compile(
    r"\b([\w-]*(?:authorization|cookie|token|secret|password|api[-_]?key|signature)[\w-]*"
    r"\s*:)[^\r\n'\"\\]+", re.IGNORECASE)
# aiohttp's parser errors quote raw request bytes (a too-long header's value without its
# name, a header line with a bad character): nothing tells whether they hold a secret, so
# no bytes literal is ever logged.
OVERLONG_LINE = re.compile(r"(Got more than \d+ bytes when reading)[^\n]*")
BYTES_LITERAL = re.compile(r"""\bb(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""")


class Redactor:
    """Masks secret-named keys, token-shaped values and every configured secret value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted(
            {*self._secrets, *(s for s in secrets if len(s) >= 4)}, key=len, reverse=True
        )

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        # Each pattern runs only on text holding what it cannot match without (most label
        # values hold none of it): the result is the same, at a fraction of the scans.
        if "@" in value:
            value = URL_CREDENTIALS.sub(f"{REDACTED}@", value)
        if "Got more than" in value:
            value = OVERLONG_LINE.sub(rf"\1: {REDACTED}", value)
        if "b'" in value or 'b"' in value:
            value = BYTES_LITERAL.sub(f"b'{REDACTED}'", value)
        if ":" in value and _may_hold(value, _HEADER_WORDS):
            value = SECRET_HEADER_LINE.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
        if _may_hold(value, _SCHEMES):
            value = TOKEN_SHAPED.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return self.mapping(value)
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def mapping(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return {k: (REDACTED if _secret_key(str(k)) else self.value(v))
                for k, v in data.items()}


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    """Whether a key names a secret; keys repeat (label names, log fields), so remembered."""
    return SECRET_KEY_PATTERN.search(key) is not None


_SCHEMES = ("bearer", "basic")
"""What TOKEN_SHAPED cannot match without."""
_HEADER_WORDS = ("authorization", "cookie", "token", "secret", "password", "api",
                 "signature")
"""What SECRET_HEADER_LINE cannot match without."""


def _may_hold(value: str, words: tuple[str, ...]) -> bool:
    """False only when no word is in the text, whatever its case. Outside ASCII, case-blind
    matching has other spellings of some letters (U+017F matches "s", U+212A "k"), so there
    the answer is always True."""
    if not value.isascii():
        return True
    lowered = value.lower()
    return any(word in lowered for word in words)
