"""What a command prints when it fails for a reason that is not a ResponderError: one line
naming the problem, never a traceback (``RESPONDER_DEBUG=1`` shows one)."""

from __future__ import annotations

import errno
import os
import socket

import aiohttp

DEBUG_VARIABLE = "RESPONDER_DEBUG"


def should_show_traceback() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def one_line(error: BaseException, listen: str | None = None) -> str:
    """The message for an unexpected failure, naming the address, file or cause."""
    if isinstance(error, aiohttp.ClientConnectorError):
        where = f"{error.host}:{error.port}"
        refused = error.os_error.errno == errno.ECONNREFUSED
        cause = "connection refused" if refused else (error.os_error.strerror
                                                      or str(error.os_error))
        return (f"responder: cannot reach the daemon at {where} ({cause}); is it running?"
                f" Start it with `responder run`, or pass --url")
    if isinstance(error, aiohttp.ClientError):
        return f"responder: the daemon's answer could not be read: {error}"
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return (f"responder: cannot listen on {listen or 'the configured address'}: the port"
                f" is in use (another responder?); stop it or set RESPONDER_LISTEN")
    if isinstance(error, FileNotFoundError):
        return f"responder: no such file: {error.filename}"
    if isinstance(error, PermissionError):
        return f"responder: permission denied: {error.filename}"
    text = " ".join(str(error).split()) or "no message"
    return (f"responder: unexpected {type(error).__name__}: {text} (set {DEBUG_VARIABLE}=1"
            f" for the traceback)")


def port_in_use(host: str, port: int) -> bool:
    """Whether another process listens on the address, checked before the daemon builds
    anything, so the refusal is one line and nothing is left half-started."""
    if port == 0:
        return False
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError:
        return False  # the daemon's own bind names the problem
    for family, kind, proto, _, address in infos[:1]:
        with socket.socket(family, kind, proto) as probe:
            # As the server binds: reuse a port in TIME_WAIT, not one that is listened on.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as e:
                return e.errno == errno.EADDRINUSE
    return False
