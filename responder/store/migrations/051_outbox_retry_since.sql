-- When a dead row was sent again by `responder outbox retry`: its retry window starts anew
-- from then, not from when the delivery was first written (created_at stays as it was).
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS retry_since timestamptz;
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (sink) WHERE status = 'dead';
