//! Campaigns: status, firmware, size, waves with their sizes and assignment
//! cursors, every rollout decision, and counts by status.

mod decisions;
mod queries;

pub use queries::{
    counts_by_status, decisions, decisions_of, get, list, waves, waves_of, CampaignFilter, CampaignView, DecisionView,
    WaveView,
};

use chrono::{DateTime, Utc};
use ota_domain::campaign::{CampaignEvent, CampaignStatus};
use ota_domain::EventRecord;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::projection::{Projection, ProjectionName};

pub struct CampaignsProjection;

impl Projection for CampaignsProjection {
    const NAME: ProjectionName = ProjectionName::Campaigns;
    const TABLES: &'static [&'static str] =
        &["campaigns", "campaign_status_counts", "campaign_waves", "campaign_decisions"];

    async fn apply(conn: &mut PgConnection, record: &EventRecord) -> Result<(), ProjectionError> {
        let event: CampaignEvent = record.decode().map_err(|e| ProjectionError::poison(record, e))?;
        let id = Uuid::parse_str(&record.aggregate_id).map_err(|e| ProjectionError::poison(record, e))?;
        decisions::record(conn, id, record, &event).await?;
        let (status, at, reason) = match event {
            CampaignEvent::CampaignCreated { name, firmware, target, rollout, rollback_of, at, .. } => {
                let json = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| ProjectionError::poison(record, e));
                sqlx::query(
                    "INSERT INTO campaigns (id, name, firmware_id, firmware_name, firmware_version, device_model,
                        status, device_count, created_at, updated_at, created_by, rollout, target, rollback_of)
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$9,$10,$11,$12,$13)",
                )
                .bind(id)
                .bind(&name)
                .bind(firmware.id.as_uuid())
                .bind(&firmware.name)
                .bind(&firmware.version)
                .bind(&firmware.device_model)
                .bind(CampaignStatus::Draft.as_str())
                .bind(target.device_ids.len() as i32)
                .bind(at)
                .bind(record.meta().map(|m| m.actor.to_string()))
                .bind(json(serde_json::to_value(&rollout))?)
                .bind(json(serde_json::to_value(&target))?)
                .bind(rollback_of.map(|c| c.as_uuid()))
                .execute(&mut *conn)
                .await?;
                bump_count(conn, CampaignStatus::Draft, 1).await?;
                return Ok(());
            }
            CampaignEvent::CampaignEdited { name, firmware, target, rollout, at } => {
                let json = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| ProjectionError::poison(record, e));
                sqlx::query(
                    "UPDATE campaigns SET name = $2, firmware_id = $3, firmware_name = $4, firmware_version = $5,
                        device_model = $6, device_count = $7, rollout = $8, target = $9, updated_at = $10
                     WHERE id = $1",
                )
                .bind(id)
                .bind(&name)
                .bind(firmware.id.as_uuid())
                .bind(&firmware.name)
                .bind(&firmware.version)
                .bind(&firmware.device_model)
                .bind(target.device_ids.len() as i32)
                .bind(json(serde_json::to_value(&rollout))?)
                .bind(json(serde_json::to_value(&target))?)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                return Ok(());
            }
            CampaignEvent::CampaignDeleted { .. } => {
                // Only a draft is deleted: it has no waves, only decisions (its edits).
                sqlx::query("DELETE FROM campaign_decisions WHERE campaign_id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                let deleted = sqlx::query("DELETE FROM campaigns WHERE id = $1").bind(id).execute(&mut *conn).await?;
                if deleted.rows_affected() > 0 {
                    bump_count(conn, CampaignStatus::Draft, -1).await?;
                }
                return Ok(());
            }
            CampaignEvent::MembershipResolved { waves, excluded, .. } => {
                let total: usize = waves.iter().map(Vec::len).sum();
                for (wave, members) in waves.iter().enumerate() {
                    sqlx::query("INSERT INTO campaign_waves (campaign_id, wave, size) VALUES ($1, $2, $3)")
                        .bind(id)
                        .bind(wave as i32)
                        .bind(members.len() as i32)
                        .execute(&mut *conn)
                        .await?;
                }
                sqlx::query("UPDATE campaigns SET device_count = $2, excluded = $3 WHERE id = $1")
                    .bind(id)
                    .bind(total as i32)
                    .bind(excluded as i32)
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            }
            CampaignEvent::WaveStarted { wave, at, .. } => {
                sqlx::query("UPDATE campaign_waves SET started_at = $3 WHERE campaign_id = $1 AND wave = $2")
                    .bind(id)
                    .bind(wave as i32)
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(
                    "UPDATE campaigns SET current_wave = $2, updated_at = $3, awaiting_approval = false WHERE id = $1",
                )
                .bind(id)
                .bind(wave as i32)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                return Ok(());
            }
            CampaignEvent::AssignmentsRecorded { wave, through, skipped, .. } => {
                sqlx::query(
                    "UPDATE campaign_waves SET assigned = GREATEST(assigned, $3), skipped = skipped + $4
                     WHERE campaign_id = $1 AND wave = $2",
                )
                .bind(id)
                .bind(wave as i32)
                .bind(through as i32)
                .bind(skipped as i32)
                .execute(&mut *conn)
                .await?;
                return Ok(());
            }
            CampaignEvent::MembersJoined { wave, devices, .. } => {
                sqlx::query("UPDATE campaign_waves SET size = size + $3 WHERE campaign_id = $1 AND wave = $2")
                    .bind(id)
                    .bind(wave as i32)
                    .bind(devices.len() as i32)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("UPDATE campaigns SET device_count = device_count + $2 WHERE id = $1")
                    .bind(id)
                    .bind(devices.len() as i32)
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            }
            CampaignEvent::ApprovalRequested { .. } | CampaignEvent::WaveApproved { .. } => {
                let waiting = matches!(event, CampaignEvent::ApprovalRequested { .. });
                sqlx::query("UPDATE campaigns SET awaiting_approval = $2 WHERE id = $1")
                    .bind(id)
                    .bind(waiting)
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            }
            CampaignEvent::CampaignScheduled { start_at, at } => {
                sqlx::query("UPDATE campaigns SET scheduled_for = $2 WHERE id = $1")
                    .bind(id)
                    .bind(start_at)
                    .execute(&mut *conn)
                    .await?;
                (CampaignStatus::Scheduled, at, None)
            }
            CampaignEvent::CampaignStarted { at } => (CampaignStatus::Running, at, None),
            CampaignEvent::CampaignPaused { reason, at, .. } => (CampaignStatus::Paused, at, reason),
            CampaignEvent::CampaignResumed { at } => (CampaignStatus::Running, at, None),
            CampaignEvent::CampaignCancelled { reason, at } => (CampaignStatus::Cancelled, at, reason),
            CampaignEvent::CampaignCompleted { at, .. } => (CampaignStatus::Completed, at, None),
            CampaignEvent::CampaignAborted { reason, at, .. } => (CampaignStatus::Aborted, at, Some(reason)),
        };
        set_status(conn, id, status, at, reason).await
    }
}

async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: CampaignStatus,
    at: DateTime<Utc>,
    reason: Option<String>,
) -> Result<(), ProjectionError> {
    let previous: Option<String> = sqlx::query_scalar(
        "UPDATE campaigns c SET status = $2, updated_at = $3, status_changes = status_changes + 1,
            started_at = CASE WHEN $2 = 'running' THEN COALESCE(started_at, $3) ELSE started_at END,
            ended_at = CASE WHEN $2 IN ('completed', 'cancelled', 'aborted') THEN $3 ELSE ended_at END,
            last_reason = COALESCE($4, last_reason)
         FROM (SELECT id, status FROM campaigns WHERE id = $1 FOR UPDATE) old
         WHERE c.id = old.id RETURNING old.status",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(at)
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(previous) = previous.and_then(|p| p.parse::<CampaignStatus>().ok()) {
        bump_count(conn, previous, -1).await?;
        bump_count(conn, status, 1).await?;
    }
    Ok(())
}

async fn bump_count(conn: &mut PgConnection, status: CampaignStatus, by: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO campaign_status_counts (status, count) VALUES ($1, $2)
         ON CONFLICT (status) DO UPDATE SET count = campaign_status_counts.count + EXCLUDED.count",
    )
    .bind(status.as_str())
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}
