"""Redactor.text skips a pattern when the text lacks what the pattern needs: the result must
be the same as running every pattern, whatever the text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from responder.redaction import (
    BYTES_LITERAL,
    OVERLONG_LINE,
    REDACTED,
    SECRET_HEADER_LINE,
    TOKEN_SHAPED,
    URL_CREDENTIALS,
    Redactor,
)

SECRETS = ["s3cr3t-value", "hunter22"]


def every_pattern(value: str) -> str:
    for secret in sorted(SECRETS, key=len, reverse=True):
        value = value.replace(secret, REDACTED)
    value = URL_CREDENTIALS.sub(f"{REDACTED}@", value)
    value = OVERLONG_LINE.sub(rf"\1: {REDACTED}", value)
    value = BYTES_LITERAL.sub(f"b'{REDACTED}'", value)
    value = SECRET_HEADER_LINE.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
    return TOKEN_SHAPED.sub(lambda m: f"{m.group(1)} {REDACTED}", value)


PIECES = ["Bearer abc.def", "BASIC dXNlcjpw", "ba\u017fic xyz", "bearer", "://user:pw@host/",
          "Got more than 8190 bytes when reading: b'Authorization: x'", "b'raw'", 'b"raw"',
          "X-Api-Key: k123", "token:", "@", ":", "s3cr3t-value", "hunter22", "sev1",
          "2026-11-23T05:32:58Z", "İ", "\n", " ", "Cookie", "x-Signature", "API_KEY", "apikey",
          "Secret", "PassWord", "toKen", "to\u212aen", "authorization", "-", "'", '"']


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=8), max_size=8))
def test_same_as_every_pattern(parts: list[str]) -> None:
    value = "".join(parts)
    assert Redactor(SECRETS).text(value) == every_pattern(value)


def test_long_s_spelling_of_basic_is_still_masked() -> None:
    long_s = "ba\u017fic"  # U+017F, LATIN SMALL LETTER LONG S, matches "s" case-blind
    assert Redactor().text(f"Authorisation {long_s} dXNlcjpw") == (
        f"Authorisation {long_s} {REDACTED}")


def test_header_words_in_any_case_or_spelling_are_still_masked() -> None:
    for line in ["X-Api-Key: k123", "cookie:abc", "X-TOKEN : t", "to\u212aen: abc",
                 "Got more than 8190 bytes when reading: b'Authorization: x'"]:
        assert Redactor().text(line) == every_pattern(line)
        assert every_pattern(line) != line
