-- Event ids seen at the signed webhook, kept for the replay window, then pruned.
CREATE TABLE event_nonces (
    source   text NOT NULL,
    event_id text NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);
CREATE INDEX event_nonces_seen ON event_nonces (seen_at);
