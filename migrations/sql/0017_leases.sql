-- Leadership of the singleton workers (relay, chainer, rollout process manager)
-- by lease, replacing session advisory locks that a frozen process or a vanished
-- host kept for as long as its connection lived (hours, with OS keepalives).
--
-- A lease is held until `expires_at` (database clock, so instances' clocks do not
-- matter) and renewed well before. Each new holder gets the next `epoch`, and
-- every leader write checks its epoch in the same transaction, so a deposed
-- leader that wakes up cannot write. A lease whose holder's database session is
-- gone (its process was killed) is free at once.
CREATE TABLE leases (
    name            text PRIMARY KEY,
    holder          text NOT NULL,
    epoch           bigint NOT NULL,
    holder_pid      integer NOT NULL,
    holder_started  timestamptz NOT NULL,
    acquired_at     timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    -- The last time the leader did its work (not just renewed): health tells a
    -- leader that stopped making progress from one that has nothing to do.
    progress_at     timestamptz NOT NULL
);
