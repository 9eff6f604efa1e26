-- The writer's usual start in one round trip: `BEGIN; SELECT action_log_append_at(n)` takes
-- the append lock and checks that the head is still the one the writer kept (n). When
-- another replica appended meanwhile it raises RS001, and the writer starts over the long
-- way (action_log_append_head(), then a read of the head).
CREATE FUNCTION action_log_append_at(expected bigint) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(8243121617845092355);  -- as action_log_append_head()
    IF (SELECT coalesce(max(seq), 0) FROM action_log) <> expected THEN
        RAISE EXCEPTION 'the action log head is no longer %', expected USING ERRCODE = 'RS001';
    END IF;
END;
$$;
