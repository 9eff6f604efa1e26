-- Whether the target's own read-back confirmed the held level (NULL: no read declared).
ALTER TABLE control_levels ADD COLUMN verified boolean;
