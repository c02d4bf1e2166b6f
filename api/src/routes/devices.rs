//! Devices: inventory, single-device updates, status reports, history, rollback.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use ota_domain::device::{Device, DeviceCommand, DeviceProfile};
use ota_domain::device_update::{DeviceUpdate, Lane, LaneKind, Origin, UpdateFirmware, UpdateState};
use ota_domain::{DeviceId, FirmwareId};
use ota_orchestrator::devices::{assign_update, AssignError, StatusReport};
use ota_projections::devices::{DeviceFilter, DeviceView};
use ota_projections::updates::{HistoryEntry, UpdateView};
use ota_projections::Page;
use serde::{Deserialize, Serialize};

use crate::auth::Writer;
use crate::error::ApiError;
use crate::extract::{Json, Paging, Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    id: String,
    device_model: String,
    hardware_version: Option<String>,
    firmware_version: Option<String>,
    #[serde(default)]
    tags: BTreeSet<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct DeviceBody {
    id: Option<DeviceId>,
    #[serde(flatten)]
    profile: DeviceProfile,
    registered_at: Option<chrono::DateTime<Utc>>,
    updated_at: Option<chrono::DateTime<Utc>>,
    /// The device's DDI secret, shown once: when the device is created or its token rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    target_token: Option<String>,
}

impl From<Device> for DeviceBody {
    fn from(d: Device) -> Self {
        Self {
            id: d.id,
            profile: d.profile,
            registered_at: d.registered_at,
            updated_at: d.updated_at,
            target_token: None,
        }
    }
}

pub fn parse_device_id(raw: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(raw).map_err(|e| ApiError::bad_request(format!("device id: {e}")))
}

/// Registers a device, or replaces its profile: 201 when new, 200 otherwise.
pub async fn register(
    State(state): State<AppState>,
    writer: Writer,
    Json(body): Json<RegisterDevice>,
) -> Result<(StatusCode, Json<DeviceBody>), ApiError> {
    let id = DeviceId::parse(&body.id).map_err(|e| ApiError::invalid("invalid_field", format!("id: {e}")))?;
    let profile = DeviceProfile {
        device_model: body.device_model.trim().to_owned(),
        hardware_version: body.hardware_version,
        firmware_version: body.firmware_version,
        tags: body.tags,
        attributes: body.attributes,
    };
    let token = crate::ddi::new_token();
    let command =
        DeviceCommand::Enrol { id: id.clone(), profile, token_sha256: crate::ddi::hash_token(&token), at: Utc::now() };
    let committed = state.store.execute::<Device>(id.as_str(), command, &writer.meta).await.map_err(ApiError::from)?;
    state.ddi.targets.invalidate(id.as_str());
    let created = committed.events.iter().any(|e| e.sequence == 1);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let mut body = DeviceBody::from(committed.state);
    body.target_token = created.then_some(token);
    Ok((status, Json(body)))
}

/// Issues a new DDI token for the device; the old one stops working at once.
pub async fn rotate_token(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
) -> Result<Json<DeviceBody>, ApiError> {
    let id = parse_device_id(&id)?;
    let token = crate::ddi::new_token();
    let command = DeviceCommand::RotateToken { token_sha256: crate::ddi::hash_token(&token), at: Utc::now() };
    let committed = state.store.execute::<Device>(id.as_str(), command, &writer.meta).await.map_err(ApiError::from)?;
    state.ddi.targets.invalidate(id.as_str());
    let mut body = DeviceBody::from(committed.state);
    body.target_token = Some(token);
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    device_model: Option<String>,
    hardware_version: Option<String>,
    firmware_version: Option<String>,
    tag: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<DeviceView>>, ApiError> {
    let page = q.paging.request()?;
    let filter = DeviceFilter {
        device_model: q.device_model,
        hardware_version: q.hardware_version,
        firmware_version: q.firmware_version,
        tag: q.tag,
    };
    Ok(Json(ota_projections::devices::list(&state.pool, &filter, page).await?))
}

pub async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<DeviceView>, ApiError> {
    let id = parse_device_id(&id)?;
    let device = ota_projections::devices::get(&state.pool, id.as_str()).await?;
    Ok(Json(device.ok_or_else(|| ApiError::not_found("device"))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    firmware_id: String,
}

impl From<AssignError> for ApiError {
    fn from(e: AssignError) -> Self {
        if e.is_unavailable() {
            return ApiError::unavailable("event store", e);
        }
        if let AssignError::Update(inner) = e {
            return inner.into();
        }
        let (refusal, code) = e.refusal();
        ApiError::refused(refusal, code, e.to_string())
    }
}

/// The device's current update, straight from its stream.
#[derive(Debug, Serialize)]
pub struct LaneBody {
    device_id: String,
    action: u32,
    /// `update`, or `rollback` (then `rolls_back_action` names the update it undoes).
    kind: &'static str,
    rolls_back_action: Option<u32>,
    campaign_id: Option<ota_domain::CampaignId>,
    wave: Option<u32>,
    retry: u32,
    firmware: UpdateFirmware,
    from: Option<UpdateFirmware>,
    state: UpdateState,
    progress: Option<u8>,
    assigned_at: chrono::DateTime<Utc>,
    updated_at: chrono::DateTime<Utc>,
}

impl LaneBody {
    fn new(device: &DeviceId, lane: Lane) -> Self {
        let (kind, rolls_back_action) = match lane.kind {
            LaneKind::Update => ("update", None),
            LaneKind::Rollback { of_action } => ("rollback", Some(of_action)),
        };
        Self {
            device_id: device.to_string(),
            action: lane.action,
            kind,
            rolls_back_action,
            campaign_id: lane.origin.campaign,
            wave: lane.origin.wave,
            retry: lane.origin.retry,
            firmware: lane.firmware,
            from: lane.from,
            state: lane.state,
            progress: lane.progress,
            assigned_at: lane.assigned_at,
            updated_at: lane.updated_at,
        }
    }
}

/// Assigns one firmware to one device (outside any campaign).
pub async fn update(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    Json(body): Json<UpdateRequest>,
) -> Result<(StatusCode, Json<LaneBody>), ApiError> {
    let device = parse_device_id(&id)?;
    let firmware: FirmwareId =
        body.firmware_id.parse().map_err(|e| ApiError::invalid("invalid_field", format!("firmware_id: {e}")))?;
    let origin = Origin::default();
    let committed =
        assign_update(&state.store, &device, firmware, origin, state.require_signed_firmware, &writer.meta, Utc::now())
            .await?;
    lane_response(device, committed.state, StatusCode::CREATED)
}

fn lane_response(
    device: DeviceId,
    update: DeviceUpdate,
    status: StatusCode,
) -> Result<(StatusCode, Json<LaneBody>), ApiError> {
    let lane = update.current.ok_or_else(|| ApiError::internal("update without lane"))?;
    Ok((status, Json(LaneBody::new(&device, lane))))
}

pub async fn current_update(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<UpdateView>, ApiError> {
    let device = parse_device_id(&id)?;
    let update = ota_projections::updates::current(&state.pool, device.as_str()).await?;
    Ok(Json(update.ok_or_else(|| ApiError::not_found("update for this device"))?))
}

pub async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<Json<Page<HistoryEntry>>, ApiError> {
    let device = parse_device_id(&id)?;
    Ok(Json(ota_projections::updates::history(&state.pool, device.as_str(), paging.request()?).await?))
}

/// Rolls the device back to the firmware it ran before its last successful update.
pub async fn rollback(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<LaneBody>), ApiError> {
    let device = parse_device_id(&id)?;
    let (registered, _) = state.store.load::<Device>(device.as_str()).await.map_err(ApiError::from)?;
    if !registered.exists() {
        return Err(ApiError::not_found("device"));
    }
    let command =
        ota_domain::device_update::DeviceUpdateCommand::RollBack { origin: Origin::default(), at: Utc::now() };
    let committed =
        state.store.execute::<DeviceUpdate>(device.as_str(), command, &writer.meta).await.map_err(ApiError::from)?;
    lane_response(device, committed.state, StatusCode::CREATED)
}

/// A device's status report (native protocol over HTTP; the same body works on NATS).
/// The device itself (`TargetToken`, only for its own id) or an operator may send it.
pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    request: axum::extract::Request,
) -> Result<(StatusCode, Json<LaneBody>), ApiError> {
    let device = parse_device_id(&id)?;
    let as_device = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("TargetToken "));
    let (mut parts, body) = request.into_parts();
    let meta = if as_device {
        let caller = crate::ddi::authorize_device(&state, device.as_str(), &headers).await?;
        ota_domain::CommandMeta::new(ota_domain::Actor::device(caller.to_string()))
    } else {
        let principal = crate::auth::bearer(&state, &parts.headers).await?;
        parts.extensions.insert(principal);
        let writer =
            <Writer as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, &state).await?;
        writer.meta
    };
    let Json(report) = <Json<StatusReport> as axum::extract::FromRequest<AppState>>::from_request(
        axum::extract::Request::from_parts(parts, body),
        &state,
    )
    .await?;
    let committed = state.reports.report(&device, report, &meta, Utc::now()).await.map_err(ApiError::from)?;
    state.ddi.targets.invalidate(device.as_str());
    lane_response(device, committed.state, StatusCode::OK)
}
