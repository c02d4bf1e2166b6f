-- The counters a rollout's gates judge by, kept by the write side in the same
-- transaction as the device-update events (an inline projection): a gate sees
-- a report the moment it is committed, however far the asynchronous read
-- models are behind. Each transaction adds to one of several slots, so
-- concurrent committers never queue on the same row; readers sum the slots.
CREATE TABLE wave_tallies (
    campaign_id uuid     NOT NULL,
    wave        integer  NOT NULL,
    state       text     NOT NULL,
    -- The attempt: 0, then one more per retry. A failure whose attempt is below
    -- the campaign's retry limit will be tried again.
    retry       integer  NOT NULL,
    slot        smallint NOT NULL,
    count       bigint   NOT NULL,
    PRIMARY KEY (campaign_id, wave, state, retry, slot)
);

-- One row once the counters were built from the events that were stored before
-- this table existed; until then the rollout's leader builds them first.
CREATE TABLE wave_tallies_built (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    built_at timestamptz NOT NULL DEFAULT now()
);
