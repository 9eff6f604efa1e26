-- One id follows an alert from its arrival to its last action: the delivery that brought
-- it stamps its inbox row, the incident it opened, the steps it planned and every record.
ALTER TABLE inbox ADD COLUMN correlation_id text;
ALTER TABLE incidents ADD COLUMN correlation_id text;
ALTER TABLE steps ADD COLUMN correlation_id text;
ALTER TABLE action_log ADD COLUMN correlation_id text;
CREATE INDEX action_log_correlation ON action_log (correlation_id, seq)
    WHERE correlation_id IS NOT NULL;
