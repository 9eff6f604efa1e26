"""Every log line goes through the one redactor: responder's and the libraries' (aiohttp's
own logger quotes a too-long header line), as JSON, or as readable lines on a terminal."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from responder.logging import configure_logging
from responder.redaction import Redactor
from tests.conftest import WEBHOOK_TOKEN, Proc, fixture_bytes, plain_test_logging, wait_for
from tests.rawhttp import raw_request
from tests.test_process import daemon_env, spawn


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    plain_test_logging()
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(proc: Proc) -> list[str]:
    return [line for line in proc.log().splitlines() if line.strip()]


async def test_a_header_line_over_the_limit_is_logged_redacted_as_json(
    tmp_path: Path, procs: list[Proc], database: str, rules_dir: Path,
) -> None:
    """aiohttp's 'Got more than 8190 bytes' error quotes the header line: in the daemon's
    log it is a JSON line like every other, and neither token appears in it."""
    proc = await spawn(tmp_path, procs, daemon_env(database, rules_dir))
    other = "Bearer zz-unconfigured-" + "q" * 30
    for name, value in ((b"Authorization", f"Bearer {WEBHOOK_TOKEN}".encode()),
                        (b"X-Api-Key", b"my-key-" + b"k" * 40),
                        (b"Proxy-Authorization", other.encode())):
        padded = value + b" " + b"p" * 9000
        answer = await raw_request(proc.port, "POST", "/webhooks/alertmanager",
                                   [(name, padded)], fixture_bytes("firing-single.json"))
        assert answer.status == 400
    await wait_for(lambda: sum("Got more than" in line for line in _lines(proc)) >= 3,
                   timeout_s=20, what="aiohttp's three error lines")
    lines = _lines(proc)
    for line in lines:
        event = json.loads(line)  # every line is JSON, the library's included
        assert "level" in event and "timestamp" in event, line
    text = "\n".join(lines)
    assert WEBHOOK_TOKEN not in text and "zz-unconfigured" not in text
    assert "my-key-" not in text
    assert any(json.loads(line).get("logger") == "aiohttp.server" for line in lines)


def test_on_a_terminal_lines_are_readable_and_still_redacted(restore_logging: None) -> None:
    """A terminal gets key=value lines from the console renderer, redacted the same way,
    for structlog's events and the standard library's records alike."""
    stream = Terminal()
    configure_logging(Redactor(["sekrit-value-0123"]), "info", stream)
    structlog.get_logger("responder.test").info("called", token="abc", note="sekrit-value-0123")
    logging.getLogger("some.library").warning("header Authorization: Bearer sekrit-value-0123")
    error = RuntimeError("failed with sekrit-value-0123")
    logging.getLogger("some.library").error("boom", exc_info=error)
    out = stream.getvalue()
    assert "sekrit-value-0123" not in out and "abc" not in out
    assert "called" in out and "[REDACTED]" in out and "RuntimeError" in out
    assert not out.lstrip().startswith("{")


def test_off_a_terminal_library_records_are_redacted_json(restore_logging: None) -> None:
    """Not a terminal: the standard library's records are JSON lines with the logger name."""
    stream = io.StringIO()
    configure_logging(Redactor(["sekrit-value-0123"]), "info", stream)
    logging.getLogger("aiohttp.server").error("bad %s", "X-Token: sekrit-value-0123")
    # aiohttp's parser quotes the raw header line, whatever its name, as a bytes literal.
    logging.getLogger("aiohttp.server").error(
        "Invalid header value char:\n\n  %r\n  ^", b"X-Custom: unguessable-\x00")
    first, second = stream.getvalue().splitlines()
    event = json.loads(first)
    assert event["logger"] == "aiohttp.server" and event["level"] == "error"
    assert "sekrit" not in first
    assert "unguessable" not in second and "Invalid header value char" in second
