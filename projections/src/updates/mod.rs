//! Device updates: the current update per device, every update's history, the
//! rollback log, and state counters per campaign wave and overall.

mod queries;

pub use queries::{
    campaign_devices, current, history, state_counts, wave_counts, CampaignDevice, HistoryEntry, UpdateView, WaveCounts,
};

use chrono::{DateTime, Utc};
use ota_domain::device_update::{DeviceUpdateEvent, LaneKind, UpdateState};
use ota_domain::EventRecord;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::projection::{Projection, ProjectionName};

pub struct UpdatesProjection;

impl Projection for UpdatesProjection {
    const NAME: ProjectionName = ProjectionName::Updates;
    const TABLES: &'static [&'static str] =
        &["device_updates", "update_history", "rollback_log", "campaign_wave_counts", "update_state_counts"];

    async fn apply(conn: &mut PgConnection, record: &EventRecord) -> Result<(), ProjectionError> {
        let event: DeviceUpdateEvent = record.decode().map_err(|e| ProjectionError::poison(record, e))?;
        let device = record.aggregate_id.as_str();
        match event {
            DeviceUpdateEvent::UpdateAssigned { action, kind, origin, firmware, from, at } => {
                let lane = Assigned {
                    action: action as i32,
                    kind,
                    campaign: origin.campaign.map(|c| c.as_uuid()),
                    wave: origin.wave.map(|w| w as i32),
                    retry: origin.retry as i32,
                    firmware_id: firmware.id.as_uuid(),
                    firmware_version: firmware.version,
                    from_version: from.map(|f| f.version),
                    actor: record.meta().map(|m| m.actor.to_string()),
                    at,
                };
                assign(conn, device, lane).await?;
            }
            DeviceUpdateEvent::DeviceNotified { action, at } => {
                transition(conn, device, action, UpdateState::Notified, None, None, at).await?
            }
            DeviceUpdateEvent::ProgressReported { action, state, progress, message, at } => {
                transition(conn, device, action, state, progress, message, at).await?
            }
            DeviceUpdateEvent::ReportIgnored { .. } => {}
            DeviceUpdateEvent::UpdateCancelled { action, at } => {
                transition(conn, device, action, UpdateState::Cancelled, None, None, at).await?
            }
            DeviceUpdateEvent::UpdateTimedOut { action, at } => {
                transition(conn, device, action, UpdateState::TimedOut, None, None, at).await?
            }
        }
        Ok(())
    }
}

struct Assigned {
    action: i32,
    kind: LaneKind,
    campaign: Option<Uuid>,
    wave: Option<i32>,
    retry: i32,
    firmware_id: Uuid,
    firmware_version: String,
    from_version: Option<String>,
    actor: Option<String>,
    at: DateTime<Utc>,
}

fn kind_str(kind: LaneKind) -> &'static str {
    match kind {
        LaneKind::Update => "update",
        LaneKind::Rollback { .. } => "rollback",
    }
}

async fn assign(conn: &mut PgConnection, device: &str, lane: Assigned) -> Result<(), sqlx::Error> {
    let previous: Option<(Option<Uuid>, Option<i32>, String)> =
        sqlx::query_as("SELECT campaign_id, wave, state FROM device_updates WHERE device_id = $1 FOR UPDATE")
            .bind(device)
            .fetch_optional(&mut *conn)
            .await?;
    // A retry replaces the device's earlier attempt in its wave's tally.
    if let Some((Some(campaign), Some(wave), state)) = previous {
        if lane.campaign == Some(campaign) && lane.wave == Some(wave) {
            bump_wave(conn, campaign, wave, &state, -1).await?;
        }
    }
    let assigned = UpdateState::Assigned.as_str();
    // The current row and the history row, from one set of parameters in one round trip.
    sqlx::query(
        "WITH current AS (
            INSERT INTO device_updates (device_id, action, kind, campaign_id, wave, retry, firmware_id,
                firmware_version, from_version, state, progress, message, assigned_at, updated_at)
            VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,NULL,NULL,$12,$12)
            ON CONFLICT (device_id) DO UPDATE SET action = EXCLUDED.action, kind = EXCLUDED.kind,
                campaign_id = EXCLUDED.campaign_id, wave = EXCLUDED.wave, retry = EXCLUDED.retry,
                firmware_id = EXCLUDED.firmware_id, firmware_version = EXCLUDED.firmware_version,
                from_version = EXCLUDED.from_version, state = EXCLUDED.state, progress = NULL, message = NULL,
                assigned_at = EXCLUDED.assigned_at, updated_at = EXCLUDED.updated_at
            RETURNING 1),
         history AS (
            INSERT INTO update_history (device_id, action, kind, campaign_id, wave, retry, firmware_id,
                firmware_version, from_version, state, assigned_by, assigned_at, updated_at)
            VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$12)
            RETURNING 1)
         SELECT (SELECT count(*) FROM current) + (SELECT count(*) FROM history)",
    )
    .bind(device)
    .bind(lane.action)
    .bind(kind_str(lane.kind))
    .bind(lane.campaign)
    .bind(lane.wave)
    .bind(lane.retry)
    .bind(lane.firmware_id)
    .bind(&lane.firmware_version)
    .bind(&lane.from_version)
    .bind(assigned)
    .bind(&lane.actor)
    .bind(lane.at)
    .execute(&mut *conn)
    .await?;
    if let LaneKind::Rollback { of_action } = lane.kind {
        sqlx::query(
            "INSERT INTO rollback_log (device_id, action, of_action, from_version, to_version, campaign_id,
                requested_by, requested_at, state)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        )
        .bind(device)
        .bind(lane.action)
        .bind(of_action as i32)
        .bind(&lane.from_version)
        .bind(&lane.firmware_version)
        .bind(lane.campaign)
        .bind(&lane.actor)
        .bind(lane.at)
        .bind(assigned)
        .execute(&mut *conn)
        .await?;
    }
    if let (Some(campaign), Some(wave)) = (lane.campaign, lane.wave) {
        bump_wave(conn, campaign, wave, assigned, 1).await?;
    }
    bump_state(conn, assigned, 1).await
}

/// Moves an update to a new state: the current row, its history row, the
/// rollback log and both counters, in one statement (one round trip per event).
async fn transition(
    conn: &mut PgConnection,
    device: &str,
    action: u32,
    state: UpdateState,
    progress: Option<u8>,
    message: Option<String>,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let finished_at = state.is_terminal().then_some(at);
    sqlx::query(
        "WITH old AS (
            SELECT state AS old_state, campaign_id, wave, kind FROM device_updates
            WHERE device_id = $1 AND action = $2 FOR UPDATE),
         moved AS (
            UPDATE device_updates SET state = $3, progress = COALESCE($4, progress),
                message = COALESCE($5, message), updated_at = $6
            WHERE device_id = $1 AND action = $2 AND EXISTS (SELECT 1 FROM old) RETURNING 1),
         history AS (
            UPDATE update_history SET state = $3, last_message = COALESCE($5, last_message), updated_at = $6,
                finished_at = COALESCE($7, finished_at)
            WHERE device_id = $1 AND action = $2 AND EXISTS (SELECT 1 FROM old) RETURNING 1),
         rollbacks AS (
            UPDATE rollback_log SET state = $3, finished_at = $7
            WHERE device_id = $1 AND action = $2 AND EXISTS (SELECT 1 FROM old WHERE kind = 'rollback') RETURNING 1),
         changes AS (
            SELECT old.campaign_id, old.wave, x.state, x.delta FROM old,
                LATERAL (VALUES (old.old_state, -1::bigint), ($3, 1::bigint)) x(state, delta)
            WHERE old.old_state <> $3),
         overall AS (
            INSERT INTO update_state_counts (state, count) SELECT state, delta FROM changes
            ON CONFLICT (state) DO UPDATE SET count = update_state_counts.count + EXCLUDED.count RETURNING 1),
         waves AS (
            INSERT INTO campaign_wave_counts (campaign_id, wave, state, count)
            SELECT campaign_id, wave, state, delta FROM changes WHERE campaign_id IS NOT NULL AND wave IS NOT NULL
            ON CONFLICT (campaign_id, wave, state) DO UPDATE SET count = campaign_wave_counts.count + EXCLUDED.count
            RETURNING 1)
         SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM history) + (SELECT count(*) FROM rollbacks)
              + (SELECT count(*) FROM overall) + (SELECT count(*) FROM waves)",
    )
    .bind(device)
    .bind(action as i32)
    .bind(state.as_str())
    .bind(progress.map(i16::from))
    .bind(&message)
    .bind(at)
    .bind(finished_at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn bump_wave(
    conn: &mut PgConnection,
    campaign: Uuid,
    wave: i32,
    state: &str,
    by: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO campaign_wave_counts (campaign_id, wave, state, count) VALUES ($1, $2, $3, $4)
         ON CONFLICT (campaign_id, wave, state) DO UPDATE SET count = campaign_wave_counts.count + EXCLUDED.count",
    )
    .bind(campaign)
    .bind(wave)
    .bind(state)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

async fn bump_state(conn: &mut PgConnection, state: &str, by: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO update_state_counts (state, count) VALUES ($1, $2)
         ON CONFLICT (state) DO UPDATE SET count = update_state_counts.count + EXCLUDED.count",
    )
    .bind(state)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}
