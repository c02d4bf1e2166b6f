use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use ota_domain::campaign::CampaignStatus;

use crate::page::{snapshot, Page, PageRequest};

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct CampaignView {
    pub id: Uuid,
    pub name: String,
    pub firmware_id: Uuid,
    pub firmware_name: String,
    pub firmware_version: String,
    pub device_model: String,
    pub status: String,
    pub device_count: i32,
    pub status_changes: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub last_reason: Option<String>,
    pub excluded: i32,
    pub current_wave: Option<i32>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub rollout: serde_json::Value,
    pub target: serde_json::Value,
    pub rollback_of: Option<Uuid>,
    pub awaiting_approval: bool,
}

#[derive(Debug, Clone, Default)]
pub struct CampaignFilter {
    /// Only campaigns in this status; parsed at the edge, so an unknown one never gets here.
    pub status: Option<CampaignStatus>,
}

const COLUMNS: &str = "id, name, firmware_id, firmware_name, firmware_version, device_model, status, device_count, \
                       status_changes, created_at, updated_at, started_at, ended_at, created_by, last_reason, excluded, \
                       current_wave, scheduled_for, rollout, target, rollback_of, awaiting_approval";

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<CampaignView>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM campaigns WHERE id = $1")).bind(id).fetch_optional(pool).await
}

pub async fn list(
    pool: &PgPool,
    filter: &CampaignFilter,
    page: PageRequest,
) -> Result<Page<CampaignView>, sqlx::Error> {
    let mut snapshot = snapshot(pool).await?;
    let items = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM campaigns WHERE ($1::text IS NULL OR status = $1)
         ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
    ))
    .bind(filter.status.map(CampaignStatus::as_str))
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *snapshot)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM campaigns WHERE ($1::text IS NULL OR status = $1)")
        .bind(filter.status.map(CampaignStatus::as_str))
        .fetch_one(&mut *snapshot)
        .await?;
    snapshot.commit().await?;
    Ok(Page { items, total, page: page.page, page_size: page.page_size })
}

/// Campaigns per status, from the incrementally kept counters.
pub async fn counts_by_status(pool: &PgPool) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count FROM campaign_status_counts WHERE count <> 0").fetch_all(pool).await?;
    Ok(rows.into_iter().collect())
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct WaveView {
    pub wave: i32,
    pub size: i32,
    pub assigned: i32,
    pub skipped: i32,
    pub started_at: Option<DateTime<Utc>>,
}

pub async fn waves(pool: &PgPool, campaign: Uuid) -> Result<Vec<WaveView>, sqlx::Error> {
    Ok(waves_of(pool, &[campaign]).await?.into_iter().map(|(_, wave)| wave).collect())
}

/// The waves of several campaigns at once (a page of them), by campaign then wave.
pub async fn waves_of(pool: &PgPool, campaigns: &[Uuid]) -> Result<Vec<(Uuid, WaveView)>, sqlx::Error> {
    let rows: Vec<WaveRow> = sqlx::query_as(
        "SELECT campaign_id, wave, size, assigned, skipped, started_at FROM campaign_waves
         WHERE campaign_id = ANY($1) ORDER BY campaign_id, wave",
    )
    .bind(campaigns)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.campaign_id, r.wave)).collect())
}

#[derive(sqlx::FromRow)]
struct WaveRow {
    campaign_id: Uuid,
    #[sqlx(flatten)]
    wave: WaveView,
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct DecisionView {
    pub sequence: i64,
    pub decision: String,
    pub wave: Option<i32>,
    pub gate: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub actor: Option<String>,
    pub decided_at: DateTime<Utc>,
}

pub async fn decisions(pool: &PgPool, campaign: Uuid) -> Result<Vec<DecisionView>, sqlx::Error> {
    Ok(decisions_of(pool, &[campaign]).await?.into_iter().map(|(_, decision)| decision).collect())
}

/// The decisions of several campaigns at once, by campaign then sequence.
pub async fn decisions_of(pool: &PgPool, campaigns: &[Uuid]) -> Result<Vec<(Uuid, DecisionView)>, sqlx::Error> {
    let rows: Vec<DecisionRow> = sqlx::query_as(
        "SELECT campaign_id, sequence, decision, wave, gate, reason, actor, decided_at FROM campaign_decisions
         WHERE campaign_id = ANY($1) ORDER BY campaign_id, sequence",
    )
    .bind(campaigns)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.campaign_id, r.decision)).collect())
}

#[derive(sqlx::FromRow)]
struct DecisionRow {
    campaign_id: Uuid,
    #[sqlx(flatten)]
    decision: DecisionView,
}
