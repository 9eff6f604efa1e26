-- Every alert delivery, keyed on what Alertmanager re-sends unchanged.
CREATE TABLE inbox (
    id               bigserial PRIMARY KEY,
    dedup_key        text NOT NULL UNIQUE,
    source           text NOT NULL,
    fingerprint      text NOT NULL,
    status           text NOT NULL,
    starts_at        text NOT NULL,
    alert            jsonb NOT NULL,
    group_key        text NOT NULL DEFAULT '',
    truncated_alerts integer NOT NULL DEFAULT 0,
    received_at      timestamptz NOT NULL DEFAULT now(),
    deliveries       integer NOT NULL DEFAULT 1,
    last_delivery_at timestamptz NOT NULL DEFAULT now()
);

-- One incident per (rule, scope) while open; scope names the keys the rule acts on.
CREATE TABLE incidents (
    id          bigserial PRIMARY KEY,
    rule_id     text NOT NULL,
    scope       text NOT NULL,
    severity    text NOT NULL,
    status      text NOT NULL CHECK (status IN ('open', 'resolved')),
    opened_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    rules_hash  text NOT NULL
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (rule_id, scope) WHERE status = 'open';

-- Containment work: written with its intent record, done once, resumed after a crash.
CREATE TABLE steps (
    id               bigserial PRIMARY KEY,
    incident_id      bigint NOT NULL REFERENCES incidents (id),
    kind             text NOT NULL CHECK (kind IN ('step', 'escalation')),
    position         integer NOT NULL,
    control          text NOT NULL,
    key              text NOT NULL,
    level            text NOT NULL,
    rank             integer NOT NULL,
    escalate_control text,
    escalate_key     text,
    escalate_level   text,
    idempotency_key  text NOT NULL UNIQUE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'done', 'failed')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (incident_id, kind, control, key, level)
);
CREATE INDEX steps_pending ON steps (incident_id, id) WHERE status = 'pending';

-- The level responder has confirmed on the target for each control key.
CREATE TABLE control_levels (
    control     text NOT NULL,
    key         text NOT NULL,
    level       text NOT NULL,
    rank        integer NOT NULL,
    incident_id bigint REFERENCES incidents (id),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (control, key)
);

-- The append-only, hash-chained action log. body is the canonical JSON the hash covers;
-- the other columns are copies of body fields for filtering.
CREATE TABLE action_log (
    seq         bigint PRIMARY KEY,
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    incident_id bigint,
    rule_id     text,
    control     text,
    key         text,
    step_id     bigint,
    body        text NOT NULL,
    prev_hash   text NOT NULL,
    hash        text NOT NULL UNIQUE
);
CREATE INDEX action_log_incident ON action_log (incident_id, seq);
CREATE INDEX action_log_rule ON action_log (rule_id, seq);
CREATE INDEX action_log_control ON action_log (control, seq);
CREATE INDEX action_log_at ON action_log (at);

CREATE FUNCTION action_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'action_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER action_log_no_update_delete
    BEFORE UPDATE OR DELETE ON action_log
    FOR EACH ROW EXECUTE FUNCTION action_log_is_append_only();

CREATE TRIGGER action_log_no_truncate
    BEFORE TRUNCATE ON action_log
    FOR EACH STATEMENT EXECUTE FUNCTION action_log_is_append_only();
