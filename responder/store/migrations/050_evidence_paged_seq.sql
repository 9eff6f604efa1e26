-- The last action-log record a page covered, per sealed version: a later version pages
-- only for what happened after it (one page per event). NULL: nothing paged yet.
ALTER TABLE evidence ADD COLUMN IF NOT EXISTS paged_seq bigint;
