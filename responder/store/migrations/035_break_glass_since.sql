-- When the running break-glass began: repeating the call extends it, up to a capped total
-- counted from here.
ALTER TABLE automation ADD COLUMN break_glass_since timestamptz;
UPDATE automation SET break_glass_since = updated_at WHERE break_glass_until IS NOT NULL;
