-- Reading the event store in global_seq order without waiting for strangers.
--
-- The relay and the chainer used to read in (tx_id, global_seq) order below
-- pg_snapshot_xmin, which is cluster-wide: one open write transaction anywhere
-- (another database, an idle session, a replay) stopped all publishing.
-- Instead, every transaction that inserts events announces itself by holding a
-- shared transaction-level advisory lock from before its first event gets a
-- position until it ends. A reader that sees position H waits only for the
-- announced writers of this database that were running then; after that,
-- nothing at or below H can still appear.
CREATE FUNCTION announce_event_writer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- 0x6f74612d77727472 = "ota-wrtr"; orchestrator::horizon reads it back from pg_locks.
    PERFORM pg_advisory_xact_lock_shared(8031150883413849202);
    RETURN NULL;
END
$$;

-- Statement-level and BEFORE: the lock is held before the identity hands out positions.
CREATE TRIGGER events_announce_writer
    BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION announce_event_writer();

-- The relay's cursor becomes a global_seq below which everything was published:
-- the first event the old order had not yet published, less one. Events above it
-- that had been published go out again; consumers deduplicate by event id.
UPDATE relay_checkpoint c
SET global_seq = COALESCE(
    (SELECT min(e.global_seq) - 1 FROM events e WHERE (e.tx_id, e.global_seq) > (c.tx_id, c.global_seq)),
    (SELECT max(global_seq) FROM events),
    0);
ALTER TABLE relay_checkpoint DROP COLUMN tx_id;

-- The chain keeps its old links (verification walks links in their own order);
-- new links follow global_seq from the first event not yet linked.
CREATE TABLE event_chain_cursor (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    global_seq bigint NOT NULL
);
INSERT INTO event_chain_cursor (global_seq)
SELECT COALESCE(
    (SELECT min(e.global_seq) - 1 FROM events e
     WHERE (e.tx_id, e.global_seq) > (SELECT c.tx_id, c.global_seq FROM event_chain c ORDER BY position DESC LIMIT 1)),
    (SELECT max(global_seq) FROM event_chain),
    0);
ALTER TABLE event_chain DROP COLUMN tx_id;

-- Nothing reads in (tx_id, global_seq) order any more; one index less on every insert.
DROP INDEX events_tx_pos;
