//! The rollback log: every rollback asked for, by whom, from which version to
//! which, and how it ended; per device or fleet-wide.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::page::{snapshot, Page, PageRequest};

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct RollbackEntry {
    pub device_id: String,
    /// The rollback's own action number.
    pub action: i32,
    /// The update it undoes.
    pub of_action: i32,
    pub from_version: Option<String>,
    pub to_version: String,
    /// The rollback campaign it belongs to, if any.
    pub campaign_id: Option<Uuid>,
    pub requested_by: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub state: String,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which rollbacks: of one device, of one campaign, or all.
#[derive(Debug, Clone, Default)]
pub struct RollbackFilter {
    pub device: Option<String>,
    pub campaign: Option<Uuid>,
}

/// Newest first.
pub async fn rollbacks(
    pool: &PgPool,
    filter: &RollbackFilter,
    page: PageRequest,
) -> Result<Page<RollbackEntry>, sqlx::Error> {
    const WHERE: &str = "WHERE ($1::text IS NULL OR device_id = $1) AND ($2::uuid IS NULL OR campaign_id = $2)";
    let mut snapshot = snapshot(pool).await?;
    let items = sqlx::query_as(&format!(
        "SELECT device_id, action, of_action, from_version, to_version, campaign_id, requested_by, requested_at,
                state, finished_at
         FROM rollback_log {WHERE} ORDER BY requested_at DESC, device_id, action DESC LIMIT $3 OFFSET $4"
    ))
    .bind(&filter.device)
    .bind(filter.campaign)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *snapshot)
    .await?;
    let total = sqlx::query_scalar(&format!("SELECT count(*) FROM rollback_log {WHERE}"))
        .bind(&filter.device)
        .bind(filter.campaign)
        .fetch_one(&mut *snapshot)
        .await?;
    snapshot.commit().await?;
    Ok(Page { items, total, page: page.page, page_size: page.page_size })
}
