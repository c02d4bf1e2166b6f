//! One entry of the rollback log.

use chrono::{DateTime, Utc};
use ota_projections::updates::RollbackEntry;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema)]
pub struct Rollback {
    pub device_id: String,
    /// The rollback's own action (its update in the device's history).
    pub action: i64,
    /// The update it undoes.
    pub of_action: i64,
    /// The version the device ran (the one rolled back), if known.
    pub from_version: Option<String>,
    /// The version it goes back to.
    pub to_version: String,
    /// The rollback campaign (an aborted campaign's), or none for a single rollback.
    pub campaign_id: Option<Uuid>,
    /// Who asked: `user:alice`, `system:rollout`, ...
    pub requested_by: Option<String>,
    pub requested_at: DateTime<Utc>,
    /// The rollback's update state (`assigned` ... `succeeded`, `failed`, ...).
    #[schema(example = "succeeded")]
    pub state: String,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<RollbackEntry> for Rollback {
    fn from(e: RollbackEntry) -> Self {
        Rollback {
            device_id: e.device_id,
            action: i64::from(e.action),
            of_action: i64::from(e.of_action),
            from_version: e.from_version,
            to_version: e.to_version,
            campaign_id: e.campaign_id,
            requested_by: e.requested_by,
            requested_at: e.requested_at,
            state: e.state,
            finished_at: e.finished_at,
        }
    }
}
