-- The device protocol (hawkBit DDI).

-- A cancellation asked of the device and not answered yet (hawkBit's CANCELING).
ALTER TABLE device_updates ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

-- When and from where each device last polled. Written in batches by the API,
-- not a projection: a replay must not forget when devices were last seen.
CREATE TABLE device_contact (
    device_id  text PRIMARY KEY,
    last_seen  timestamptz NOT NULL,
    address    text
);

-- Projection "downloads": what was served to whom.
CREATE TABLE firmware_downloads (
    device_id    text NOT NULL,
    sequence     bigint NOT NULL,
    action       integer NOT NULL,
    firmware_id  uuid NOT NULL,
    requests     integer NOT NULL,
    "offset"     bigint NOT NULL,
    bytes        bigint NOT NULL,
    complete     boolean NOT NULL,
    whole        boolean NOT NULL,
    via          text NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (device_id, sequence)
);
CREATE INDEX firmware_downloads_firmware ON firmware_downloads (firmware_id, at);
