-- The signature check made at upload: {"status": "unsigned" | "verified" | "invalid", "key_id", "reason"}.
ALTER TABLE firmware ADD COLUMN signature jsonb NOT NULL DEFAULT '{"status": "unsigned"}';
