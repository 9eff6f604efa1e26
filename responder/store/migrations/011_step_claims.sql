-- Replicas claim a step before calling its target; the lease says until when the claim
-- holds. Times come from the database's now(), never from a replica's clock.
ALTER TABLE steps
    ADD COLUMN claimed_by  text,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN claims      integer NOT NULL DEFAULT 0;
CREATE INDEX steps_pending_claims ON steps (incident_id, lease_until) WHERE status = 'pending';
