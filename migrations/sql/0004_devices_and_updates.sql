-- Device inventory (projection "devices").
CREATE TABLE devices (
    id               text PRIMARY KEY,
    device_model     text NOT NULL,
    hardware_version text,
    firmware_version text,
    tags             jsonb NOT NULL DEFAULT '[]',
    attributes       jsonb NOT NULL DEFAULT '{}',
    registered_at    timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    last_seen        timestamptz
);
CREATE INDEX devices_model ON devices (device_model, id);
CREATE INDEX devices_hardware ON devices (hardware_version, id);
CREATE INDEX devices_firmware ON devices (firmware_version, id);
CREATE INDEX devices_tags ON devices USING gin (tags);

-- Projection "updates": the current update per device, every update's history,
-- the rollback log, and counters per campaign wave and per outcome.
CREATE TABLE device_updates (
    device_id        text PRIMARY KEY,
    action           integer NOT NULL,
    kind             text NOT NULL,
    campaign_id      uuid,
    wave             integer,
    retry            integer NOT NULL DEFAULT 0,
    firmware_id      uuid NOT NULL,
    firmware_version text NOT NULL,
    from_version     text,
    state            text NOT NULL,
    progress         smallint,
    message          text,
    assigned_at      timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX device_updates_campaign ON device_updates (campaign_id, state, device_id);
CREATE INDEX device_updates_active ON device_updates (state, updated_at)
    WHERE state IN ('assigned', 'notified', 'downloading', 'downloaded', 'installing');

CREATE TABLE update_history (
    device_id        text NOT NULL,
    action           integer NOT NULL,
    kind             text NOT NULL,
    campaign_id      uuid,
    wave             integer,
    retry            integer NOT NULL DEFAULT 0,
    firmware_id      uuid NOT NULL,
    firmware_version text NOT NULL,
    from_version     text,
    state            text NOT NULL,
    last_message     text,
    assigned_by      text,
    assigned_at      timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    PRIMARY KEY (device_id, action)
);
CREATE INDEX update_history_campaign ON update_history (campaign_id, device_id);

CREATE TABLE rollback_log (
    device_id     text NOT NULL,
    action        integer NOT NULL,
    of_action     integer NOT NULL,
    from_version  text,
    to_version    text NOT NULL,
    campaign_id   uuid,
    requested_by  text,
    requested_at  timestamptz NOT NULL,
    state         text NOT NULL,
    finished_at   timestamptz,
    PRIMARY KEY (device_id, action)
);

-- Counters kept incrementally: never COUNT(*) over a large table per decision.
CREATE TABLE campaign_wave_counts (
    campaign_id  uuid NOT NULL,
    wave         integer NOT NULL,
    state        text NOT NULL,
    count        bigint NOT NULL,
    PRIMARY KEY (campaign_id, wave, state)
);

CREATE TABLE update_state_counts (
    state text PRIMARY KEY,
    count bigint NOT NULL
);
