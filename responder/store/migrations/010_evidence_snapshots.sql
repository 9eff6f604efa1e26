-- What Prometheus and the targets said when an incident opened, kept for its bundles.
CREATE TABLE evidence_snapshots (
    incident_id bigint NOT NULL REFERENCES incidents (id),
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('prometheus', 'http')),
    ok          boolean NOT NULL,
    result      text NOT NULL,
    taken_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, name)
);
