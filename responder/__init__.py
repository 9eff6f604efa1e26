"""responder: automatic, fail-closed first response to alerts."""

__version__ = "0.1.0"
