-- When a sealed version's content was read (the database clock, before its first read).
-- Two replicas sealing one incident from the same action records can still differ in what
-- they read (where a control stands now); the one read later is the current one.
ALTER TABLE evidence ADD COLUMN built_at timestamptz;
