-- Keys every server instance on this database must share and that no setting
-- provides: drawn once by the first instance to need one, read by the others.
-- (Today: the key of signed download links when neither OTA_DOWNLOAD_URL_SECRET
-- nor OTA_JWT_SECRET is set, which a per-process random key broke across instances.)
CREATE TABLE server_keys (
    name       text PRIMARY KEY,
    key        bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
