//! Campaigns: create, lifecycle transitions, queries, statistics.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use ota_domain::campaign::{Campaign, CampaignCommand, CampaignFirmware, CampaignStatus, Target, TargetFilter};
use ota_domain::device_update::UpdateState;
use ota_domain::firmware::{Firmware, FirmwareStatus};
use ota_domain::rollout::RolloutPlan;
use ota_domain::{CampaignId, DeviceId, FirmwareId};
use ota_projections::campaigns::{CampaignFilter, CampaignView};
use ota_projections::Page;
use serde::{Deserialize, Serialize};

use super::validate;
use crate::auth::Writer;
use crate::error::ApiError;
use crate::extract::{optional_json, Json, Paging, Path, Query};
use crate::state::AppState;

/// Largest explicit target list in one request.
const MAX_TARGET_DEVICES: usize = 100_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    name: String,
    firmware_id: String,
    target: TargetBody,
    #[serde(default)]
    rollout: RolloutPlan,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    #[serde(default)]
    device_ids: Vec<String>,
    #[serde(default)]
    filter: Option<TargetFilter>,
    #[serde(default)]
    continuous: bool,
}

#[derive(Debug, Serialize)]
pub struct CampaignBody {
    id: Option<CampaignId>,
    name: String,
    status: CampaignStatus,
    firmware: Option<CampaignFirmware>,
    target: Target,
    rollout: RolloutPlan,
    device_count: usize,
    /// Devices per wave once the campaign started.
    waves: Vec<usize>,
    /// Devices assigned so far per wave.
    assigned_per_wave: Vec<u32>,
    excluded: u32,
    current_wave: Option<usize>,
    awaiting_approval: bool,
    scheduled_for: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
}

impl From<Campaign> for CampaignBody {
    fn from(c: Campaign) -> Self {
        Self {
            id: c.id,
            name: c.name,
            status: c.status,
            firmware: c.firmware,
            device_count: c
                .membership
                .as_ref()
                .map_or(c.target.device_ids.len(), |m| m.waves.iter().map(Vec::len).sum()),
            waves: c.membership.as_ref().map_or_else(Vec::new, |m| m.waves.iter().map(Vec::len).collect()),
            excluded: c.membership.as_ref().map_or(0, |m| m.excluded),
            assigned_per_wave: c.assigned.clone(),
            current_wave: c.current_wave,
            awaiting_approval: c.awaiting_approval,
            scheduled_for: c.scheduled_for,
            target: c.target,
            rollout: c.rollout,
            created_at: c.created_at,
            started_at: c.started_at,
            ended_at: c.ended_at,
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    writer: Writer,
    Json(body): Json<CreateCampaign>,
) -> Result<(StatusCode, Json<CampaignBody>), ApiError> {
    let name = validate::text("name", &body.name, 200)?;
    if body.target.device_ids.len() > MAX_TARGET_DEVICES {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("target.device_ids: at most {MAX_TARGET_DEVICES} devices per request"),
        ));
    }
    let device_ids = body
        .target
        .device_ids
        .iter()
        .enumerate()
        .map(|(i, d)| {
            DeviceId::parse(d).map_err(|e| ApiError::invalid("invalid_field", format!("target.device_ids[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let firmware_id: FirmwareId =
        body.firmware_id.parse().map_err(|e| ApiError::invalid("invalid_field", format!("firmware_id: {e}")))?;
    let firmware = load_firmware(&state, firmware_id).await?;
    let id = CampaignId::new_random();
    let command = CampaignCommand::Create {
        id,
        name,
        firmware,
        target: Target { device_ids, filter: body.target.filter, continuous: body.target.continuous },
        rollout: body.rollout,
        at: Utc::now(),
    };
    let committed =
        state.store.execute::<Campaign>(&id.to_string(), command, &writer.meta).await.map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, Json(committed.state.into())))
}

/// The firmware must exist (in the event store, not merely in a lagging read model) and be active.
async fn load_firmware(state: &AppState, id: FirmwareId) -> Result<CampaignFirmware, ApiError> {
    let (firmware, _) = state.store.load::<Firmware>(&id.to_string()).await.map_err(ApiError::from)?;
    let Some(spec) = firmware.spec.as_ref() else {
        return Err(ApiError::invalid("campaign.unknown_firmware", format!("firmware_id: no firmware {id}")));
    };
    if state.require_signed_firmware && !firmware.signature.is_verified() {
        return Err(ApiError::invalid(
            "campaign.unverified_firmware",
            format!("firmware_id: firmware {id} has no verified signature and this server requires one"),
        ));
    }
    if firmware.status == FirmwareStatus::Deprecated {
        return Err(ApiError::invalid(
            "campaign.deprecated_firmware",
            format!("firmware_id: firmware {id} is deprecated"),
        ));
    }
    Ok(CampaignFirmware {
        id,
        name: spec.name.clone(),
        version: spec.version.clone(),
        device_model: spec.device_model.clone(),
    })
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<CampaignView>>, ApiError> {
    let page = q.paging.request()?;
    let status = q.status.as_deref().map(str::parse::<CampaignStatus>).transpose();
    let filter = CampaignFilter { status: status.map_err(|e| ApiError::bad_request(e.to_string()))? };
    Ok(Json(ota_projections::campaigns::list(&state.pool, &filter, page).await?))
}

/// A campaign with its waves (sizes and per-state counts) and every decision taken.
#[derive(Debug, Serialize)]
pub struct CampaignDetail {
    #[serde(flatten)]
    campaign: CampaignView,
    waves: Vec<WaveDetail>,
    decisions: Vec<ota_projections::campaigns::DecisionView>,
}

#[derive(Debug, Serialize)]
pub struct WaveDetail {
    wave: i32,
    size: i32,
    assigned: i32,
    skipped: i32,
    started_at: Option<DateTime<Utc>>,
    in_progress: i64,
    succeeded: i64,
    failed: i64,
    rejected: i64,
    timed_out: i64,
    cancelled: i64,
    rolled_back: i64,
}

pub async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<CampaignDetail>, ApiError> {
    let id = validate::uuid("id", &id)?;
    let campaign =
        ota_projections::campaigns::get(&state.pool, id).await?.ok_or_else(|| ApiError::not_found("campaign"))?;
    let counts = ota_projections::updates::wave_counts(&state.pool, id).await?;
    let waves = ota_projections::campaigns::waves(&state.pool, id)
        .await?
        .into_iter()
        .map(|w| {
            let by_state = counts.iter().find(|c| c.wave == w.wave).map(|c| c.by_state.clone()).unwrap_or_default();
            let n = |s: &str| by_state.get(s).copied().unwrap_or(0);
            WaveDetail {
                wave: w.wave,
                size: w.size,
                assigned: w.assigned,
                skipped: w.skipped,
                started_at: w.started_at,
                in_progress: UpdateState::IN_FLIGHT.iter().map(|s| n(s.as_str())).sum(),
                succeeded: n("succeeded"),
                failed: n("failed"),
                rejected: n("rejected"),
                timed_out: n("timed_out"),
                cancelled: n("cancelled"),
                rolled_back: n("rolled_back"),
            }
        })
        .collect();
    let decisions = ota_projections::campaigns::decisions(&state.pool, id).await?;
    Ok(Json(CampaignDetail { campaign, waves, decisions }))
}

#[derive(Debug, Deserialize)]
pub struct DevicesQuery {
    state: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

pub async fn devices(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DevicesQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let id = validate::uuid("id", &id)?;
    let only = q.state.as_deref().map(str::parse::<UpdateState>).transpose();
    let only = only.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let page = ota_projections::updates::campaign_devices(&state.pool, id, only, q.paging.request()?).await?;
    Ok(Json(page))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason: Option<String>,
}

fn reason(body: &[u8]) -> Result<Option<String>, ApiError> {
    let reason = optional_json::<ReasonBody>(body)?.and_then(|b| b.reason);
    reason.map(|r| validate::text("reason", &r, 1000)).transpose()
}

async fn transition(
    state: &AppState,
    writer: &Writer,
    id: &str,
    command: CampaignCommand,
) -> Result<Json<CampaignBody>, ApiError> {
    let id = validate::uuid("id", id)?;
    let committed =
        state.store.execute::<Campaign>(&id.to_string(), command, &writer.meta).await.map_err(ApiError::from)?;
    Ok(Json(committed.state.into()))
}

/// Starts a campaign: resolves its target into waves now, or schedules it for `start_at`.
pub async fn start(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
) -> Result<Json<CampaignBody>, ApiError> {
    let id = validate::uuid("id", &id)?.to_string();
    let (campaign, _) = state.store.load::<Campaign>(&id).await.map_err(ApiError::from)?;
    let now = Utc::now();
    let future_start = campaign.rollout.start_at.is_some_and(|t| t > now);
    let membership = if campaign.exists() && campaign.status == CampaignStatus::Draft && !future_start {
        let seed = rand_seed();
        Some(
            ota_orchestrator::membership::resolve(&state.pool, &campaign, seed)
                .await
                .map_err(|e| ApiError::unavailable("inventory", e))?,
        )
    } else {
        None
    };
    let command = CampaignCommand::Start { membership, at: now };
    let committed = state.store.execute::<Campaign>(&id, command, &writer.meta).await.map_err(ApiError::from)?;
    Ok(Json(committed.state.into()))
}

/// A fresh seed per start; it is recorded, so the membership stays reproducible.
fn rand_seed() -> u64 {
    let id = uuid::Uuid::new_v4();
    let bytes = id.as_bytes();
    u64::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]])
}

pub async fn approve(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
) -> Result<Json<CampaignBody>, ApiError> {
    transition(&state, &writer, &id, CampaignCommand::Approve { at: Utc::now() }).await
}

pub async fn pause(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<CampaignBody>, ApiError> {
    let reason = reason(&body)?;
    transition(&state, &writer, &id, CampaignCommand::Pause { reason, gate: None, at: Utc::now() }).await
}

pub async fn resume(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
) -> Result<Json<CampaignBody>, ApiError> {
    transition(&state, &writer, &id, CampaignCommand::Resume { at: Utc::now() }).await
}

/// An operator stops a campaign for good (devices in flight get a cancel).
pub async fn abort(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<CampaignBody>, ApiError> {
    let reason = reason(&body)?.unwrap_or_else(|| format!("aborted by {}", writer.meta.actor));
    transition(&state, &writer, &id, CampaignCommand::Abort { reason, gate: None, at: Utc::now() }).await
}

/// What a cancel did: members never assigned stay so; devices in flight get a cancel.
#[derive(Debug, Serialize)]
pub struct CancelBody {
    #[serde(flatten)]
    campaign: CampaignBody,
    never_assigned: u64,
    in_flight: i64,
}

pub async fn cancel(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<CancelBody>, ApiError> {
    let reason = reason(&body)?;
    let Json(campaign) = transition(&state, &writer, &id, CampaignCommand::Cancel { reason, at: Utc::now() }).await?;
    let never_assigned =
        campaign.waves.iter().enumerate().map(|(w, size)| {
            (*size as u64).saturating_sub(campaign.assigned_per_wave.get(w).copied().unwrap_or(0) as u64)
        });
    let never_assigned = never_assigned.sum();
    let mut in_flight = 0;
    if let Some(id) = campaign.id {
        for wave in ota_projections::updates::wave_counts(&state.pool, id.as_uuid()).await? {
            in_flight += wave.in_flight();
        }
    }
    Ok(Json(CancelBody { campaign, never_assigned, in_flight }))
}

/// Fleet-wide figures, from incrementally kept counters.
pub async fn stats(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let campaigns = ota_projections::campaigns::counts_by_status(&state.pool).await?;
    let firmware = ota_projections::firmware::count(&state.pool).await?;
    let devices = ota_projections::devices::count(&state.pool).await?;
    let updates = ota_projections::updates::state_counts(&state.pool).await?;
    let n = |s: &str| updates.get(s).copied().unwrap_or(0);
    let succeeded = n("succeeded");
    let decided = succeeded + n("failed") + n("timed_out") + n("rejected");
    let success_rate = if decided > 0 { Some(succeeded as f64 / decided as f64) } else { None };
    Ok(Json(serde_json::json!({
        "devices": devices,
        "firmware": firmware,
        "campaigns_by_status": campaigns,
        "updates_by_state": updates,
        "success_rate": success_rate,
    })))
}
