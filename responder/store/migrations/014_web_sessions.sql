-- Web sessions ended by logout, until their cookie would have expired anyway. Kept in the
-- store so a logout holds on every replica and across restarts.
CREATE TABLE web_sessions_revoked (
    sid        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
