-- The event store. postgres-es writes the seven columns it names; the columns
-- after them carry what it lacks: a global position, the id of the writing
-- transaction (for the relay's visibility-safe read) and the commit-side time.
CREATE TABLE events (
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text NOT NULL,
    event_version  text NOT NULL,
    payload        jsonb NOT NULL,
    metadata       jsonb NOT NULL,
    global_seq     bigint GENERATED ALWAYS AS IDENTITY,
    tx_id          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE UNIQUE INDEX events_global_seq ON events (global_seq);
CREATE INDEX events_tx_pos ON events (tx_id, global_seq);

CREATE TABLE snapshots (
    aggregate_type   text NOT NULL,
    aggregate_id     text NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          jsonb NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Where the relay has published up to, in (tx_id, global_seq) order.
CREATE TABLE relay_checkpoint (
    name         text PRIMARY KEY,
    tx_id        xid8 NOT NULL,
    global_seq   bigint NOT NULL,
    published    bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
