//! Point-in-time audit: what a campaign or a device looked like at any moment,
//! folded from the events recorded up to it, with who ordered each step; and
//! which firmware every device ran at that moment, under which campaign.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use futures::TryStreamExt;
use ota_domain::campaign::{Campaign, CampaignStatus};
use ota_domain::device::{Device, DeviceProfile};
use ota_domain::device_update::{DeviceUpdate, Lane, UpdateFirmware, UpdateState};
use ota_domain::{CampaignId, CommandMeta};
use serde::Serialize;
use sqlx::{PgPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("stored event {aggregate_type}:{aggregate_id}:{sequence} does not decode: {detail}")]
    Corrupt { aggregate_type: String, aggregate_id: String, sequence: i64, detail: String },
}

/// One event as an auditor reads it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditedEvent {
    pub aggregate_type: String,
    pub sequence: i64,
    pub global_seq: i64,
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    /// `kind:id` of whoever caused it (a user, a device, or the system on behalf of a cause).
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub causation_id: Option<String>,
    /// The event itself (for decisions: the numbers the gate saw); very large ones are left out.
    pub payload: Option<serde_json::Value>,
}

const PAYLOAD_LIMIT: usize = 64 * 1024;

struct StoredRow {
    event: AuditedEvent,
    /// The version the payload was stored at; `apply` upcasts it.
    version: String,
    payload: serde_json::Value,
    aggregate_id: String,
}

async fn events_until(
    pool: &PgPool,
    aggregate_type: &str,
    ids: &[String],
    at: DateTime<Utc>,
) -> Result<Vec<StoredRow>, AuditError> {
    let mut rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, global_seq, event_type, event_version, payload, metadata,
                recorded_at
         FROM events WHERE aggregate_type = $1 AND aggregate_id = ANY($2) AND recorded_at <= $3
         ORDER BY aggregate_id, sequence",
    )
    .bind(aggregate_type)
    .bind(ids)
    .bind(at)
    .fetch(pool);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let payload: serde_json::Value = row.try_get("payload")?;
        let metadata: HashMap<String, String> =
            serde_json::from_value(row.try_get::<serde_json::Value, _>("metadata")?).unwrap_or_default();
        let meta = CommandMeta::from_map(&metadata);
        let small = payload.to_string().len() <= PAYLOAD_LIMIT;
        out.push(StoredRow {
            aggregate_id: row.try_get("aggregate_id")?,
            version: row.try_get("event_version")?,
            event: AuditedEvent {
                aggregate_type: row.try_get("aggregate_type")?,
                sequence: row.try_get("sequence")?,
                global_seq: row.try_get("global_seq")?,
                event_type: row.try_get("event_type")?,
                recorded_at: row.try_get("recorded_at")?,
                actor: meta.as_ref().map(|m| m.actor.to_string()),
                request_id: meta.as_ref().and_then(|m| m.request_id.clone()),
                causation_id: meta.and_then(|m| m.causation_id),
                payload: small.then(|| payload.clone()),
            },
            payload,
        });
    }
    Ok(out)
}

fn apply<A: Aggregate>(state: &mut A, row: &StoredRow) -> Result<(), AuditError> {
    let event = ota_domain::upcast::decode::<A::Event>(
        &row.event.aggregate_type,
        &row.event.event_type,
        &row.version,
        row.payload.clone(),
    )
    .map_err(|e| AuditError::Corrupt {
        aggregate_type: row.event.aggregate_type.clone(),
        aggregate_id: row.aggregate_id.clone(),
        sequence: row.event.sequence,
        detail: e.to_string(),
    })?;
    state.apply(event);
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaveAtT {
    pub wave: usize,
    pub size: usize,
    pub assigned: u32,
    /// Devices of the wave by the state their update for this campaign was in.
    pub states: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignAtT {
    pub campaign_id: CampaignId,
    pub at: DateTime<Utc>,
    pub exists: bool,
    pub name: String,
    pub status: CampaignStatus,
    pub firmware: Option<ota_domain::campaign::CampaignFirmware>,
    pub waves: Vec<WaveAtT>,
    pub events: Vec<AuditedEvent>,
}

pub async fn campaign_at(pool: &PgPool, id: CampaignId, at: DateTime<Utc>) -> Result<CampaignAtT, AuditError> {
    let rows = events_until(pool, "Campaign", &[id.to_string()], at).await?;
    let mut campaign = Campaign::default();
    for row in &rows {
        apply(&mut campaign, row)?;
    }
    let members: Vec<String> = (0..campaign.wave_count())
        .flat_map(|w| campaign.wave_members(w).iter().map(|d| d.to_string()).collect::<Vec<_>>())
        .collect();
    // Each member's update for this campaign, as it last stood before `at`.
    let mut lanes: HashMap<String, Lane> = HashMap::new();
    let mut updates: HashMap<String, DeviceUpdate> = HashMap::new();
    for row in events_until(pool, "DeviceUpdate", &members, at).await? {
        let state = updates.entry(row.aggregate_id.clone()).or_default();
        apply(state, &row)?;
        if let Some(lane) = state.current.as_ref().filter(|l| l.origin.campaign == Some(id)) {
            lanes.insert(row.aggregate_id.clone(), lane.clone());
        }
    }
    let waves = (0..campaign.wave_count())
        .map(|wave| {
            let mut states = BTreeMap::new();
            for device in campaign.wave_members(wave) {
                if let Some(lane) = lanes.get(device.as_str()) {
                    *states.entry(lane.state.as_str().to_owned()).or_default() += 1;
                }
            }
            WaveAtT {
                wave,
                size: campaign.wave_members(wave).len(),
                assigned: campaign.assigned.get(wave).copied().unwrap_or(0),
                states,
            }
        })
        .collect();
    Ok(CampaignAtT {
        campaign_id: id,
        at,
        exists: campaign.exists(),
        name: campaign.name.clone(),
        status: campaign.status,
        firmware: campaign.firmware.clone(),
        waves,
        events: rows.into_iter().map(|r| r.event).collect(),
    })
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceAtT {
    pub device_id: String,
    pub at: DateTime<Utc>,
    pub registered: bool,
    pub profile: DeviceProfile,
    /// What the device ran: its last successful update, else what it was registered with.
    pub running: Option<String>,
    pub update: Option<Lane>,
    pub installed: Vec<UpdateFirmware>,
    /// Inventory and update events together, in the order they happened.
    pub events: Vec<AuditedEvent>,
}

pub async fn device_at(pool: &PgPool, id: &str, at: DateTime<Utc>) -> Result<DeviceAtT, AuditError> {
    let ids = [id.to_owned()];
    let inventory = events_until(pool, "Device", &ids, at).await?;
    let updates = events_until(pool, "DeviceUpdate", &ids, at).await?;
    let mut device = Device::default();
    for row in &inventory {
        apply(&mut device, row)?;
    }
    let mut update = DeviceUpdate::default();
    for row in &updates {
        apply(&mut update, row)?;
    }
    let running =
        update.installed.last().map(|f| f.version.clone()).or_else(|| device.profile.firmware_version.clone());
    let mut events: Vec<AuditedEvent> = inventory.into_iter().chain(updates).map(|r| r.event).collect();
    events.sort_by_key(|e| e.global_seq);
    Ok(DeviceAtT {
        device_id: id.to_owned(),
        at,
        registered: device.exists(),
        profile: device.profile,
        running,
        update: update.current,
        installed: update.installed,
        events,
    })
}

/// The compliance question: at `at`, which firmware did each device run, installed by which campaign.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunningAtT {
    pub device_id: String,
    pub firmware_version: String,
    pub firmware_id: Option<ota_domain::FirmwareId>,
    /// The campaign whose update installed it (none: as registered, or a single-device update).
    pub campaign_id: Option<CampaignId>,
    pub since: Option<DateTime<Utc>>,
}

pub async fn fleet_at(pool: &PgPool, at: DateTime<Utc>) -> Result<Vec<RunningAtT>, AuditError> {
    let mut running: BTreeMap<String, RunningAtT> = BTreeMap::new();
    let devices: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'Device' AND recorded_at <= $1",
    )
    .bind(at)
    .fetch_all(pool)
    .await?;
    for chunk in devices.chunks(1000) {
        let mut profiles: HashMap<String, Device> = HashMap::new();
        for row in events_until(pool, "Device", chunk, at).await? {
            apply(profiles.entry(row.aggregate_id.clone()).or_default(), &row)?;
        }
        for (id, device) in &profiles {
            if let Some(version) = &device.profile.firmware_version {
                running.insert(
                    id.clone(),
                    RunningAtT {
                        device_id: id.clone(),
                        firmware_version: version.clone(),
                        firmware_id: None,
                        campaign_id: None,
                        since: device.registered_at,
                    },
                );
            }
        }
        let mut updates: HashMap<String, DeviceUpdate> = HashMap::new();
        for row in events_until(pool, "DeviceUpdate", chunk, at).await? {
            let update = updates.entry(row.aggregate_id.clone()).or_default();
            apply(update, &row)?;
            let Some(lane) = update.current.as_ref() else { continue };
            if matches!(lane.state, UpdateState::Succeeded | UpdateState::RolledBack) {
                running.insert(
                    row.aggregate_id.clone(),
                    RunningAtT {
                        device_id: row.aggregate_id.clone(),
                        firmware_version: lane.firmware.version.clone(),
                        firmware_id: Some(lane.firmware.id),
                        campaign_id: lane.origin.campaign,
                        since: Some(lane.updated_at),
                    },
                );
            }
        }
    }
    Ok(running.into_values().collect())
}
