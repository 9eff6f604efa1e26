"""PostgreSQL persistence: inbox, incidents, steps, control levels and the action log."""
