-- The tamper-evident log: a hash chain over the global event order (tx_id, global_seq),
-- each link = SHA-256(previous link || the event's canonical bytes). Written by the
-- chainer shortly after events commit; `ota audit verify` recomputes it.
CREATE TABLE event_chain (
    position    bigint PRIMARY KEY,
    tx_id       xid8 NOT NULL,
    global_seq  bigint NOT NULL UNIQUE,
    link        bytea NOT NULL,
    chained_at  timestamptz NOT NULL DEFAULT now()
);
