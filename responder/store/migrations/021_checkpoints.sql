-- Every signed checkpoint (C2SP signed note), one per tree size: Ed25519 is deterministic,
-- so two replicas signing one size with the shared key write the same note.
CREATE TABLE checkpoints (
    tree_size bigint PRIMARY KEY,
    root      bytea NOT NULL,
    note      text NOT NULL,
    reason    text NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION action_log_is_append_only();

-- Checkpoints go to the sinks (the witnesses) through the outbox, like bundles.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('bundle', 'page', 'checkpoint'));
