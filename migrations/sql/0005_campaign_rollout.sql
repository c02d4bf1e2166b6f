-- Projection "campaigns": wave membership sizes and assignment cursors, and every
-- rollout decision with the numbers it saw.
CREATE TABLE campaign_waves (
    campaign_id uuid NOT NULL,
    wave        integer NOT NULL,
    size        integer NOT NULL,
    assigned    integer NOT NULL DEFAULT 0,
    skipped     integer NOT NULL DEFAULT 0,
    started_at  timestamptz,
    PRIMARY KEY (campaign_id, wave)
);

CREATE TABLE campaign_decisions (
    campaign_id uuid NOT NULL,
    sequence    bigint NOT NULL,
    decision    text NOT NULL,
    wave        integer,
    gate        jsonb,
    reason      text,
    actor       text,
    decided_at  timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, sequence)
);

ALTER TABLE campaigns ADD COLUMN excluded integer NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN current_wave integer;
ALTER TABLE campaigns ADD COLUMN scheduled_for timestamptz;
ALTER TABLE campaigns ADD COLUMN rollout jsonb NOT NULL DEFAULT '{}';
ALTER TABLE campaigns ADD COLUMN target jsonb NOT NULL DEFAULT '{}';
