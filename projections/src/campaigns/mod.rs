//! Campaigns: status, firmware and size, plus counts by status.

mod queries;

pub use queries::{counts_by_status, get, list, CampaignFilter, CampaignView};

use ota_domain::campaign::{CampaignEvent, CampaignStatus};
use ota_domain::EventRecord;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::projection::{Projection, ProjectionName};

pub struct CampaignsProjection;

impl Projection for CampaignsProjection {
    const NAME: ProjectionName = ProjectionName::Campaigns;
    const AGGREGATE_TYPES: Option<&'static [&'static str]> = Some(&["Campaign"]);
    const TABLES: &'static [&'static str] = &["campaigns", "campaign_status_counts"];

    async fn apply(conn: &mut PgConnection, record: &EventRecord) -> Result<(), ProjectionError> {
        let event: CampaignEvent = record
            .decode()
            .map_err(|e| ProjectionError::poison(record, e))?;
        let id = Uuid::parse_str(&record.aggregate_id)
            .map_err(|e| ProjectionError::poison(record, e))?;
        let (status, at, reason) = match event {
            CampaignEvent::CampaignCreated {
                name,
                firmware,
                target,
                at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO campaigns (id, name, firmware_id, firmware_name, firmware_version, device_model,
                        status, device_count, created_at, updated_at, created_by)
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$9,$10)",
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
                .execute(&mut *conn)
                .await?;
                bump_count(conn, CampaignStatus::Draft, 1).await?;
                return Ok(());
            }
            CampaignEvent::CampaignStarted { at } => (CampaignStatus::Running, at, None),
            CampaignEvent::CampaignPaused { reason, at } => (CampaignStatus::Paused, at, reason),
            CampaignEvent::CampaignResumed { at } => (CampaignStatus::Running, at, None),
            CampaignEvent::CampaignCancelled { reason, at } => {
                (CampaignStatus::Cancelled, at, reason)
            }
            CampaignEvent::CampaignCompleted { at } => (CampaignStatus::Completed, at, None),
            CampaignEvent::CampaignAborted { reason, at } => {
                (CampaignStatus::Aborted, at, Some(reason))
            }
        };
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
}

async fn bump_count(
    conn: &mut PgConnection,
    status: CampaignStatus,
    by: i64,
) -> Result<(), sqlx::Error> {
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
