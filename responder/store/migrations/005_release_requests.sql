-- Releases of two-person controls wait here for a different operator's approval.
CREATE TABLE release_requests (
    id           bigserial PRIMARY KEY,
    control      text NOT NULL,
    key          text NOT NULL,
    from_level   text NOT NULL,
    to_level     text NOT NULL,
    reason       text NOT NULL,
    ticket       text NOT NULL,
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'approved', 'expired')),
    approved_by  text,
    decided_at   timestamptz
);
CREATE INDEX release_requests_pending ON release_requests (expires_at) WHERE status = 'pending';
