-- The action log as an RFC 9162 Merkle tree: every complete subtree, stored once.
-- Node (level, idx) covers records seq idx * 2^level + 1 .. (idx + 1) * 2^level; level 0 is
-- SHA-256(0x00 || body), the rest SHA-256(0x01 || left || right). Any proof or root is
-- folded from O(log n) of these rows. Written in the transaction that appends the records.
CREATE TABLE merkle_nodes (
    level smallint NOT NULL,
    idx   bigint NOT NULL,
    hash  bytea NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TRIGGER merkle_nodes_no_update_delete
    BEFORE UPDATE OR DELETE ON merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION action_log_is_append_only();

CREATE TRIGGER merkle_nodes_no_truncate
    BEFORE TRUNCATE ON merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION action_log_is_append_only();

-- Records written before the tree existed become its first leaves (seq runs 1, 2, ...).
INSERT INTO merkle_nodes (level, idx, hash)
SELECT 0, seq - 1, sha256('\x00'::bytea || convert_to(body, 'UTF8')) FROM action_log;

DO $$
DECLARE
    lvl integer := 0;
    made bigint;
BEGIN
    LOOP
        INSERT INTO merkle_nodes (level, idx, hash)
        SELECT lvl + 1, l.idx / 2, sha256('\x01'::bytea || l.hash || r.hash)
        FROM merkle_nodes l JOIN merkle_nodes r ON r.level = lvl AND r.idx = l.idx + 1
        WHERE l.level = lvl AND l.idx % 2 = 0;
        GET DIAGNOSTICS made = ROW_COUNT;
        EXIT WHEN made = 0;
        lvl := lvl + 1;
    END LOOP;
END;
$$;

-- Appends take this transaction lock first, then read the head: replicas append one after
-- the other instead of racing for sequence numbers and retrying. A function, so that the
-- read after the wait sees what the previous holder committed (a fresh snapshot).
CREATE FUNCTION action_log_append_head() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(8243121617845092355);  -- 0x7265737000000003: 'resp', 3
    RETURN (SELECT coalesce(max(seq), 0) FROM action_log);
END;
$$;
