-- The executor asks, under its per-key lock, whether a higher step on the same key is pending.
CREATE INDEX steps_pending_by_key ON steps (control, key, rank) WHERE status = 'pending';
