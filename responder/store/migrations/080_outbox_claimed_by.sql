-- Which replica is delivering an outbox row now: when that replica's session ends, another
-- replica sends the row at once instead of waiting out the row's 30 s lease
-- (store/liveness.py). NULL for rows claimed before this column, and by tools.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claimed_by text;
