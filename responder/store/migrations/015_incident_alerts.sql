-- Which alerts (by fingerprint) of an incident fire now. An incident resolves when its last
-- firing alert resolves, not at the first resolved one. Incidents opened before this table
-- existed have no rows and resolve at their first resolved alert, as they did.
CREATE TABLE incident_alerts (
    incident_id bigint  NOT NULL REFERENCES incidents (id),
    fingerprint text    NOT NULL,
    firing      boolean NOT NULL,
    PRIMARY KEY (incident_id, fingerprint)
);
