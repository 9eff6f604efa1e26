-- Sealed evidence bundles: one row per version, each naming the digest of the one before.
CREATE TABLE evidence (
    incident_id    bigint NOT NULL REFERENCES incidents (id),
    version        integer NOT NULL,
    digest         text NOT NULL,
    content_digest text NOT NULL,
    prev_digest    text,
    body           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, version)
);

CREATE FUNCTION evidence_is_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'evidence is sealed: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER evidence_no_update_delete
    BEFORE UPDATE OR DELETE ON evidence
    FOR EACH ROW EXECUTE FUNCTION evidence_is_immutable();

CREATE TRIGGER evidence_no_truncate
    BEFORE TRUNCATE ON evidence
    FOR EACH STATEMENT EXECUTE FUNCTION evidence_is_immutable();
