"""Structured logs with the shared redaction rules applied to every event, responder's own
and every library's (aiohttp logs a too-long header line, token and all, through the
standard ``logging`` module): one processor chain, one redactor, one line per event.

Lines are JSON, or readable key=value lines when the log stream is a terminal.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

from responder.redaction import Redactor

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class RedactProcessor:
    """structlog processor: masks secrets in every key and value of the event."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return self.redactor.mapping(event)


def _renderer(stream: TextIO) -> Processor:
    if stream.isatty():
        # Tracebacks are already text (format_exc_info), redacted like the rest.
        return structlog.dev.ConsoleRenderer(colors=False,
                                             exception_formatter=structlog.dev.plain_traceback)
    return structlog.processors.JSONRenderer()


def configure_logging(redactor: Redactor, level: str = "info",
                      stream: TextIO | None = None) -> None:
    """Send every log line to ``stream`` (stderr), redacted, at the given level."""
    stream = stream or sys.stderr
    stamped: list[Processor] = [structlog.contextvars.merge_contextvars,
                                structlog.processors.add_log_level,
                                structlog.processors.TimeStamper(fmt="iso", utc=True)]
    tail: list[Processor] = [structlog.processors.format_exc_info, RedactProcessor(redactor),
                             _renderer(stream)]
    structlog.configure(
        processors=[*stamped, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*stamped, structlog.stdlib.add_logger_name,
                           structlog.stdlib.PositionalArgumentsFormatter()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail]))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
