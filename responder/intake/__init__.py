"""Intake: where alerts enter responder and are durably recorded before anyone is answered."""
