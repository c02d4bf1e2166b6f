-- Idempotency keys of the management API (issue #11, item 5): the first outcome
-- of a POST sent with `Idempotency-Key`, replayed to a retry of the same request
-- instead of executing it again. In Postgres so that every server instance sees
-- the same keys and a restart forgets none.
--
-- A row is either in flight (lock_token set, status NULL: a request holds it
-- until locked_until, extending the lease while it runs) or completed (status,
-- headers and body of the answer). Rows live until expires_at (24 hours after
-- the request) and are then deleted by a periodic sweep; an expired row is also
-- taken over by a new request with the same key, so the sweep is only tidying.
CREATE TABLE idempotency_keys (
    -- SHA-256 of (caller, method, path, key): the scope of a key, of fixed size
    -- whatever the length of the caller's subject or the path. The key itself is
    -- not stored: it is what the body is sealed with.
    id           bytea PRIMARY KEY,
    caller       text NOT NULL,
    method       text NOT NULL,
    path         text NOT NULL,
    -- SHA-256 of method, path and query, and body. NULL while a streamed body
    -- (a firmware upload) has not been read to its end.
    fingerprint  bytea,
    lock_token   uuid,
    locked_until timestamptz,
    status       smallint,
    headers      jsonb,
    -- The answer's body, sealed (ChaCha20-Poly1305) with a key derived from the
    -- Idempotency-Key: an answer may carry a secret shown once (a device token,
    -- an API key) that must not lie here in clear.
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    CHECK ((status IS NULL) = (lock_token IS NOT NULL))
);

CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
