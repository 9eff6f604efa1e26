-- Sealed bundles (about 10 kB of canonical JSON each) are compressed when stored, once per
-- version, inside the writer's transaction. lz4 does that in under half pglz's time and
-- stores them a little smaller (9.8 kB to 4.1 kB against pglz's 4.3 kB, measured on a
-- bench incident's bundle). Values already stored keep pglz; both read back the same.
-- A server built without lz4 keeps pglz: nothing else depends on the method.
DO $$
BEGIN
    ALTER TABLE evidence ALTER COLUMN body SET COMPRESSION lz4;
    ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this server has no lz4: bundles stay compressed with pglz';
END
$$;
