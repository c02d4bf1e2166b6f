use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use ota_domain::device_update::UpdateState;

use crate::page::{snapshot, Page, PageRequest};

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct UpdateView {
    pub device_id: String,
    pub action: i32,
    pub kind: String,
    pub campaign_id: Option<Uuid>,
    pub wave: Option<i32>,
    pub retry: i32,
    pub firmware_id: Uuid,
    pub firmware_version: String,
    pub from_version: Option<String>,
    pub state: String,
    pub progress: Option<i16>,
    pub message: Option<String>,
    /// The device was asked to cancel and has not answered yet.
    pub cancel_requested: bool,
    pub assigned_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct HistoryEntry {
    pub action: i32,
    pub kind: String,
    pub campaign_id: Option<Uuid>,
    pub wave: Option<i32>,
    pub retry: i32,
    pub firmware_id: Uuid,
    pub firmware_version: String,
    pub from_version: Option<String>,
    pub state: String,
    pub last_message: Option<String>,
    pub assigned_by: Option<String>,
    pub assigned_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct CampaignDevice {
    pub device_id: String,
    pub state: String,
    pub wave: Option<i32>,
    pub retry: i32,
    pub progress: Option<i16>,
    pub updated_at: DateTime<Utc>,
}

/// Counts of a wave's devices by their current state.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct WaveCounts {
    pub wave: i32,
    pub by_state: BTreeMap<String, i64>,
}

impl WaveCounts {
    /// Devices of the wave whose update is now in `state`.
    pub fn of(&self, state: UpdateState) -> i64 {
        self.by_state.get(state.as_str()).copied().unwrap_or(0)
    }

    /// Devices of the wave whose update is under way.
    pub fn in_flight(&self) -> i64 {
        UpdateState::IN_FLIGHT.into_iter().map(|s| self.of(s)).sum()
    }
}

/// The columns of `UpdateView`, for every query that reads `device_updates` rows.
pub(super) const CURRENT_COLUMNS: &str = "device_id, action, kind, campaign_id, wave, retry, firmware_id, \
    firmware_version, from_version, state, progress, message, cancel_requested, assigned_at, updated_at";

pub async fn current(pool: &PgPool, device: &str) -> Result<Option<UpdateView>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {CURRENT_COLUMNS} FROM device_updates WHERE device_id = $1"))
        .bind(device)
        .fetch_optional(pool)
        .await
}

pub async fn history(pool: &PgPool, device: &str, page: PageRequest) -> Result<Page<HistoryEntry>, sqlx::Error> {
    let mut snapshot = snapshot(pool).await?;
    let items = sqlx::query_as(
        "SELECT action, kind, campaign_id, wave, retry, firmware_id, firmware_version, from_version, state,
            last_message, assigned_by, assigned_at, updated_at, finished_at
         FROM update_history WHERE device_id = $1 ORDER BY action DESC LIMIT $2 OFFSET $3",
    )
    .bind(device)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *snapshot)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM update_history WHERE device_id = $1")
        .bind(device)
        .fetch_one(&mut *snapshot)
        .await?;
    snapshot.commit().await?;
    Ok(Page { items, total, page: page.page, page_size: page.page_size })
}

/// A campaign's devices, all or only those whose update is now in `state`.
pub async fn campaign_devices(
    pool: &PgPool,
    campaign: Uuid,
    state: Option<UpdateState>,
    page: PageRequest,
) -> Result<Page<CampaignDevice>, sqlx::Error> {
    let state = state.map(UpdateState::as_str);
    let mut snapshot = snapshot(pool).await?;
    let items = sqlx::query_as(
        "SELECT device_id, state, wave, retry, progress, updated_at FROM device_updates
         WHERE campaign_id = $1 AND ($2::text IS NULL OR state = $2) ORDER BY device_id LIMIT $3 OFFSET $4",
    )
    .bind(campaign)
    .bind(state)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *snapshot)
    .await?;
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM device_updates WHERE campaign_id = $1 AND ($2::text IS NULL OR state = $2)",
    )
    .bind(campaign)
    .bind(state)
    .fetch_one(&mut *snapshot)
    .await?;
    snapshot.commit().await?;
    Ok(Page { items, total, page: page.page, page_size: page.page_size })
}

/// Per-wave counters of a campaign, from the incrementally kept table.
pub async fn wave_counts(pool: &PgPool, campaign: Uuid) -> Result<Vec<WaveCounts>, sqlx::Error> {
    let rows: Vec<(i32, String, i64)> = sqlx::query_as(
        "SELECT wave, state, count FROM campaign_wave_counts WHERE campaign_id = $1 AND count <> 0 ORDER BY wave, state",
    )
    .bind(campaign)
    .fetch_all(pool)
    .await?;
    let mut waves: Vec<WaveCounts> = Vec::new();
    for (wave, state, count) in rows {
        match waves.last_mut() {
            Some(w) if w.wave == wave => {
                w.by_state.insert(state, count);
            }
            _ => waves.push(WaveCounts { wave, by_state: BTreeMap::from([(state, count)]) }),
        }
    }
    Ok(waves)
}

/// Updates by their current state (outcomes for finished ones).
pub async fn state_counts(pool: &PgPool) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count FROM update_state_counts WHERE count <> 0").fetch_all(pool).await?;
    Ok(rows.into_iter().collect())
}
