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

async fn history_total(snapshot: &mut sqlx::PgConnection, device: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM update_history WHERE device_id = $1")
        .bind(device)
        .fetch_one(snapshot)
        .await
}

/// One update of a device, everything the read models know of it: its history row,
/// with the live progress and cancel flag while it is the device's current one, and
/// the action it rolls back for a rollback.
#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct UpdateRecord {
    pub device_id: String,
    pub action: i32,
    pub kind: String,
    pub rolls_back_action: Option<i32>,
    pub campaign_id: Option<Uuid>,
    pub wave: Option<i32>,
    pub retry: i32,
    pub firmware_id: Uuid,
    pub firmware_version: String,
    pub from_version: Option<String>,
    pub state: String,
    pub progress: Option<i16>,
    pub message: Option<String>,
    pub cancel_requested: bool,
    pub assigned_by: Option<String>,
    pub assigned_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const RECORD: &str = "SELECT h.device_id, h.action, h.kind, r.of_action AS rolls_back_action, h.campaign_id, h.wave,
        h.retry, h.firmware_id, h.firmware_version, h.from_version, h.state, d.progress,
        COALESCE(d.message, h.last_message) AS message, COALESCE(d.cancel_requested, false) AS cancel_requested,
        h.assigned_by, h.assigned_at, h.updated_at, h.finished_at
    FROM update_history h
    LEFT JOIN device_updates d ON d.device_id = h.device_id AND d.action = h.action
    LEFT JOIN rollback_log r ON r.device_id = h.device_id AND r.action = h.action";

/// The device's current (or last) update.
pub async fn current_record(pool: &PgPool, device: &str) -> Result<Option<UpdateRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{RECORD} WHERE h.device_id = $1 AND h.action = (SELECT action FROM device_updates WHERE device_id = $1)"
    ))
    .bind(device)
    .fetch_optional(pool)
    .await
}

/// One update of a device by its action number.
pub async fn record(pool: &PgPool, device: &str, action: i32) -> Result<Option<UpdateRecord>, sqlx::Error> {
    sqlx::query_as(&format!("{RECORD} WHERE h.device_id = $1 AND h.action = $2"))
        .bind(device)
        .bind(action)
        .fetch_optional(pool)
        .await
}

/// Every update of a device, newest first.
pub async fn records(pool: &PgPool, device: &str, page: PageRequest) -> Result<Page<UpdateRecord>, sqlx::Error> {
    let mut snapshot = snapshot(pool).await?;
    let items = sqlx::query_as(&format!("{RECORD} WHERE h.device_id = $1 ORDER BY h.action DESC LIMIT $2 OFFSET $3"))
        .bind(device)
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(&mut *snapshot)
        .await?;
    let total = history_total(&mut snapshot, device).await?;
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

/// Per-wave counters of a campaign (see `wave_counts_of`).
pub async fn wave_counts(pool: &PgPool, campaign: Uuid) -> Result<Vec<WaveCounts>, sqlx::Error> {
    Ok(wave_counts_of(pool, &[campaign]).await?.into_iter().map(|(_, counts)| counts).collect())
}

/// Per-wave counters of several campaigns at once, by campaign then wave.
///
/// Read from the counters the store keeps in the reports' own transactions
/// (`wave_tallies`), the ones the gates decide by: a campaign shown completed
/// never shows devices in flight that its gate had already counted finished.
/// They count by the same rules as `campaign_wave_counts`, which this read
/// model keeps (and a replay rebuilds) beside them.
pub async fn wave_counts_of(pool: &PgPool, campaigns: &[Uuid]) -> Result<Vec<(Uuid, WaveCounts)>, sqlx::Error> {
    let rows: Vec<(Uuid, i32, String, i64)> = sqlx::query_as(
        "SELECT campaign_id, wave, state, sum(count)::bigint FROM wave_tallies WHERE campaign_id = ANY($1)
         GROUP BY campaign_id, wave, state HAVING sum(count) <> 0 ORDER BY campaign_id, wave, state",
    )
    .bind(campaigns)
    .fetch_all(pool)
    .await?;
    let mut waves: Vec<(Uuid, WaveCounts)> = Vec::new();
    for (campaign, wave, state, count) in rows {
        match waves.last_mut() {
            Some((c, w)) if *c == campaign && w.wave == wave => {
                w.by_state.insert(state, count);
            }
            _ => waves.push((campaign, WaveCounts { wave, by_state: BTreeMap::from([(state, count)]) })),
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
