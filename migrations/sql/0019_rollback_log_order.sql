-- The rollback log is read newest first, fleet-wide or by campaign
-- (GET /api/v1/rollbacks); a mass rollback writes a row per device.
CREATE INDEX rollback_log_requested ON rollback_log (requested_at DESC);
CREATE INDEX rollback_log_campaign ON rollback_log (campaign_id, requested_at DESC) WHERE campaign_id IS NOT NULL;
