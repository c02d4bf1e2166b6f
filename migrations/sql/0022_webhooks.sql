-- Webhook subscriptions and their deliveries: an outbox, filled from the event
-- stream and drained by senders on any instance. Not events: a subscription
-- holds the HMAC secret in the clear (it must sign with it), and events are
-- published to NATS and kept forever.
CREATE TABLE webhooks (
    id          uuid PRIMARY KEY,
    url         text NOT NULL,
    topics      text[] NOT NULL,
    description text,
    secret      text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    webhook_id      uuid NOT NULL REFERENCES webhooks (id),
    topic           text NOT NULL,
    -- `<aggregate_type>:<aggregate_id>:<sequence>`; NULL for a test delivery.
    event_key       text,
    body            jsonb NOT NULL,
    -- pending, delivered, failed (attempts used up) or cancelled (subscription deleted).
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A sender on some instance is at it until then; after, another may retry.
    claimed_until   timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    -- An event redelivered by JetStream is queued once per subscription and topic.
    UNIQUE (webhook_id, event_key, topic)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, created_at DESC, id);

CREATE TABLE webhook_attempts (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id),
    attempt     integer NOT NULL,
    at          timestamptz NOT NULL,
    status      integer,
    error       text,
    duration_ms integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
