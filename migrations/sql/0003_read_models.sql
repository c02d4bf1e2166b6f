CREATE TABLE firmware (
    id                uuid PRIMARY KEY,
    name              text NOT NULL,
    version           text NOT NULL,
    device_model      text NOT NULL,
    hardware_versions jsonb NOT NULL,
    release_notes     text,
    filename          text NOT NULL,
    size              bigint NOT NULL,
    sha256            text NOT NULL,
    sha1              text NOT NULL,
    md5               text NOT NULL,
    storage_path      text NOT NULL,
    status            text NOT NULL CHECK (status IN ('active', 'deprecated')),
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    created_by        text
);
CREATE INDEX firmware_model ON firmware (device_model, created_at DESC);
CREATE INDEX firmware_created ON firmware (created_at DESC, id);

CREATE TABLE campaigns (
    id                uuid PRIMARY KEY,
    name              text NOT NULL,
    firmware_id       uuid NOT NULL,
    firmware_name     text NOT NULL,
    firmware_version  text NOT NULL,
    device_model      text NOT NULL,
    status            text NOT NULL CHECK (status IN
                        ('draft','scheduled','running','paused','completed','cancelled','aborted')),
    device_count      integer NOT NULL,
    status_changes    integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    started_at        timestamptz,
    ended_at          timestamptz,
    created_by        text,
    last_reason       text
);
CREATE INDEX campaigns_status ON campaigns (status, created_at DESC);
CREATE INDEX campaigns_created ON campaigns (created_at DESC, id);

-- Campaign counts by status, maintained incrementally for statistics.
CREATE TABLE campaign_status_counts (
    status text PRIMARY KEY,
    count  bigint NOT NULL
);

-- Every event of every aggregate in the order this projection applied it:
-- who did what, when. The per-aggregate history endpoints read it.
CREATE TABLE activity (
    applied_order  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL,
    global_seq     bigint NOT NULL,
    event_type     text NOT NULL,
    actor          text,
    request_id     text,
    causation_id   text,
    recorded_at    timestamptz NOT NULL,
    UNIQUE (aggregate_type, aggregate_id, sequence)
);
