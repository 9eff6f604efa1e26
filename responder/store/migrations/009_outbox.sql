-- Deliveries to sinks, written in the same transaction as the evidence or page they carry.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    incident_id     bigint REFERENCES incidents (id),
    sink            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('bundle', 'page')),
    idempotency_key text NOT NULL UNIQUE,
    payload         text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_incident ON outbox (incident_id);
