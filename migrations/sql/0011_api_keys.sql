-- When each API key was last used (batched by the API; keys themselves are events).
CREATE TABLE api_key_usage (
    key_id        text PRIMARY KEY,
    last_used_at  timestamptz NOT NULL,
    address       text
);
