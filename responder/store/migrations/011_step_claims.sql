-- Replicas claim a step before calling its target; the lease says until when the claim
-- holds. Times come from the database's now(), never from a replica's clock.
ALTER TABLE steps
    ADD COLUMN claimed_by  text,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN claims      integer NOT NULL DEFAULT 0;
CREATE INDEX steps_pending_claims ON steps (incident_id, lease_until) WHERE status = 'pending';

-- The newest action record a sealed bundle covers: a replica that built its content from
-- an older read than the last seal (another replica sealed in between) does not seal it.
ALTER TABLE evidence ADD COLUMN actions_seq bigint;
