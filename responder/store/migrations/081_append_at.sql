-- The writer's usual start in one round trip: `BEGIN; SELECT action_log_append_at(n, h)`
-- takes the append lock and checks that the head is still the one the writer kept (the
-- record at seq n, with chain hash h; n = 0 for an empty log). When another writer appended
-- meanwhile it raises RS001, and the writer starts over the long way
-- (action_log_append_head(), then a read of the head).
CREATE FUNCTION action_log_append_at(expected_seq bigint, expected_hash text)
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    last_seq bigint;
    last_hash text;
BEGIN
    PERFORM pg_advisory_xact_lock(8243121617845092355);  -- as action_log_append_head()
    SELECT seq, hash INTO last_seq, last_hash FROM action_log ORDER BY seq DESC LIMIT 1;
    IF coalesce(last_seq, 0) <> expected_seq
       OR (last_seq IS NOT NULL AND last_hash <> expected_hash) THEN
        RAISE EXCEPTION 'the action log head is no longer % (%)', expected_seq, expected_hash
            USING ERRCODE = 'RS001';
    END IF;
END;
$$;
