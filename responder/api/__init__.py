"""Operator-facing HTTP API: health, metrics and the action log."""
