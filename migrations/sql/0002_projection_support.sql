-- Per projection and aggregate: the last applied sequence. Applying an event and
-- advancing this row happen in one transaction, so a redelivery is a no-op.
CREATE TABLE projection_offsets (
    projection     text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    last_sequence  bigint NOT NULL,
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);

-- Per projection: totals for lag and health.
CREATE TABLE projection_status (
    projection      text PRIMARY KEY,
    applied         bigint NOT NULL DEFAULT 0,
    last_global_seq bigint NOT NULL DEFAULT 0,
    rebuilt_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Events a projection could not decode: kept for an operator, never retried blindly.
CREATE TABLE projection_failures (
    projection     text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL,
    error          text NOT NULL,
    failed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, aggregate_type, aggregate_id, sequence)
);
