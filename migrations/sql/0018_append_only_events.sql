-- The event store is append-only for everyone but the owner of the schema.
--
-- The server is meant to connect as a role that may only SELECT and INSERT
-- events (`ota migrate --server-role`, docs/operations.md). These triggers are
-- the second line behind those grants: whoever is granted more by mistake still
-- cannot UPDATE, DELETE or TRUNCATE events or their chain links, unless they are
-- (a member of) the owner, as migrations and an operator's repairs are.
CREATE FUNCTION refuse_history_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER') THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION '% on % refused: the event history is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER event_chain_append_only
    BEFORE UPDATE OR DELETE ON event_chain
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER event_chain_no_truncate
    BEFORE TRUNCATE ON event_chain
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();

-- A group commit that lost a race takes its own rows of the losing aggregates
-- out again before it commits (orchestrator::store::batch::take_out). Those rows
-- were never visible to anyone, so this is not a change of history; it is the
-- only delete the server needs, and it runs as the owner, limited to rows the
-- calling transaction wrote itself (tx_id): a committed event never qualifies.
CREATE FUNCTION take_out_own_events(kind text, ids text[], sequences bigint[]) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    WITH gone AS (
        DELETE FROM events
        WHERE aggregate_type = kind
          AND (aggregate_id, sequence) IN (SELECT * FROM UNNEST(ids, sequences))
          AND tx_id = pg_current_xact_id()
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION take_out_own_events(text, text[], bigint[]) FROM PUBLIC;
