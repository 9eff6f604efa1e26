"""Replay: run a candidate rule table over past alerts in shadow mode and show what would
have been done differently. Nothing is called and nothing is written.

inputs (the store's log, or a file) -> events -> shadow (real planner, no target) -> diff.
"""
