//! Devices: inventory, single-device updates, status reports, history, rollback.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{FromRef, FromRequest, FromRequestParts, State};
use axum::http::StatusCode;
use chrono::Utc;
use ota_domain::device::{Device as DeviceState, DeviceCommand, DeviceProfile};
use ota_domain::device_update::{DeviceUpdate as UpdateStream, DeviceUpdateCommand, Origin};
use ota_domain::{DeviceId, FirmwareId};
use ota_orchestrator::devices::{assign_update, AssignError, StatusReport};
use ota_projections::devices::DeviceFilter;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authenticator, Role, Writer};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Paging, Path, Query};
use crate::resources::{Device, DeviceUpdate, Page};
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, register))
        .routes(routes!(get_one))
        .routes(routes!(current_update, update))
        .routes(routes!(cancel_update))
        .routes(routes!(history))
        .routes(routes!(rollback))
        .routes(routes!(rotate_token))
}

/// The status route authenticates its caller itself (a device's token or an operator's).
pub(super) fn status_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "gw-0042", "device_model": "gw", "hardware_version": "rev-b",
    "firmware_version": "2.0.3", "tags": ["plant-7"], "attributes": {"site": "Lyon"}}))]
pub struct RegisterDevice {
    /// 1 to 256 characters, no control characters or '/'.
    pub(super) id: String,
    pub(super) device_model: String,
    pub(super) hardware_version: Option<String>,
    pub(super) firmware_version: Option<String>,
    #[serde(default)]
    pub(super) tags: BTreeSet<String>,
    #[serde(default)]
    pub(super) attributes: BTreeMap<String, String>,
}

impl RegisterDevice {
    /// The id as sent, and the profile the body describes (one registration or an
    /// import's row: the same shape, read the same way).
    pub(super) fn into_parts(self) -> (String, DeviceProfile) {
        let profile = DeviceProfile {
            device_model: self.device_model.trim().to_owned(),
            hardware_version: self.hardware_version,
            firmware_version: self.firmware_version,
            tags: self.tags,
            attributes: self.attributes,
        };
        (self.id, profile)
    }
}

pub fn parse_device_id(raw: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(raw).map_err(|e| ApiError::bad_request(format!("device id: {e}")))
}

/// The device a command just changed, with its last contact.
async fn device_answer(state: &AppState, device: DeviceState) -> Result<Device, ApiError> {
    let last_seen = match &device.id {
        Some(id) => ota_projections::devices::last_seen(&state.pool, id.as_str()).await?,
        None => None,
    };
    Device::from_state(device, last_seen)
}

/// Register a device, or replace its profile (an upsert). A new device's answer
/// carries its DDI secret, `target_token`, this once.
#[utoipa::path(post, path = "/devices", operation_id = "register_device", tag = "devices", request_body = RegisterDevice, responses(
    (status = 201, body = Device, description = "Registered; `target_token` is shown this once."),
    (status = 200, body = Device, description = "Known already: its profile was replaced (or was the same)."),
    (status = 422, body = ErrorBody, description = "A field is invalid (`invalid_field`)."),
))]
async fn register(
    State(state): State<AppState>,
    writer: Writer,
    Json(body): Json<RegisterDevice>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    let (id, profile) = body.into_parts();
    let id = DeviceId::parse(&id).map_err(|e| ApiError::invalid("invalid_field", format!("id: {e}")))?;
    let token = crate::ddi::new_token();
    let command =
        DeviceCommand::Enrol { id: id.clone(), profile, token_sha256: crate::ddi::hash_token(&token), at: Utc::now() };
    let committed = state.store.execute::<DeviceState>(&id, command, &writer.meta).await?;
    state.ddi.targets.invalidate(id.as_str());
    let created = committed.events.iter().any(|e| e.sequence == 1);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let mut device = device_answer(&state, committed.state).await?;
    device.target_token = created.then_some(token);
    Ok((status, Json(device)))
}

/// Issue a new DDI token for the device; the old one stops working at once.
#[utoipa::path(post, path = "/devices/{id}/token", tag = "devices", params(("id" = String, Path, description = "The device id.")), responses(
    (status = 200, body = Device, description = "`target_token` is the new secret, shown this once."),
    (status = 404, body = ErrorBody, description = "No such device (`device.not_found`)."),
))]
async fn rotate_token(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    let id = parse_device_id(&id)?;
    let token = crate::ddi::new_token();
    let command = DeviceCommand::RotateToken { token_sha256: crate::ddi::hash_token(&token), at: Utc::now() };
    let committed = state.store.execute::<DeviceState>(&id, command, &writer.meta).await?;
    state.ddi.targets.invalidate(id.as_str());
    let mut device = device_answer(&state, committed.state).await?;
    device.target_token = Some(token);
    Ok(Json(device))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    device_model: Option<String>,
    hardware_version: Option<String>,
    firmware_version: Option<String>,
    /// Devices carrying this tag.
    tag: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    paging: Paging,
}

/// List the inventory, filtered by any of model, hardware, firmware version and tag.
#[utoipa::path(get, path = "/devices", operation_id = "list_devices", tag = "devices", params(ListQuery, Paging), responses((status = 200, body = Page<Device>)))]
async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<Page<Device>>, ApiError> {
    let page = q.paging.request()?;
    let filter = DeviceFilter {
        device_model: q.device_model,
        hardware_version: q.hardware_version,
        firmware_version: q.firmware_version,
        tag: q.tag,
    };
    let views = ota_projections::devices::list(&state.pool, &filter, page).await?;
    Ok(Json(Page::from_view(views, Device::from_view)?))
}

/// One device.
#[utoipa::path(get, path = "/devices/{id}", operation_id = "get_device", tag = "devices", params(("id" = String, Path, description = "The device id.")), responses(
    (status = 200, body = Device),
    (status = 404, body = ErrorBody, description = "No such device (`not_found`)."),
))]
async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Device>, ApiError> {
    let id = parse_device_id(&id)?;
    let device = ota_projections::devices::get(&state.pool, id.as_str()).await?;
    Ok(Json(Device::from_view(device.ok_or_else(|| ApiError::not_found("device"))?)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    firmware_id: String,
    /// Take the device back to an earlier signed release than the one it runs.
    /// Only an admin may; recorded with the assignment's actor.
    #[serde(default)]
    allow_downgrade: bool,
    /// Seconds without a report from the device after which the update times out
    /// (1 to 2,592,000, 30 days); none: it waits for the device.
    #[schema(minimum = 1, maximum = 2592000)]
    timeout_secs: Option<u32>,
}

/// A single update's timeout at most (30 days).
const MAX_UPDATE_TIMEOUT_SECS: u32 = 30 * 24 * 3600;

impl From<AssignError> for ApiError {
    fn from(e: AssignError) -> Self {
        if e.is_unavailable() {
            return ApiError::unavailable("event store", e);
        }
        if let AssignError::Update(inner) = e {
            return ApiError::from(inner);
        }
        let (refusal, code) = e.refusal();
        ApiError::refused(refusal, code, e.to_string())
    }
}

/// The update a command just changed.
fn update_answer(
    device: &DeviceId,
    stream: UpdateStream,
    assigned_by: Option<String>,
) -> Result<DeviceUpdate, ApiError> {
    let lane = stream.current.ok_or_else(|| ApiError::internal_text("update without lane"))?;
    Ok(DeviceUpdate::from_lane(device, lane, assigned_by))
}

/// Assign one firmware to one device, outside any campaign.
#[utoipa::path(post, path = "/devices/{id}/update", tag = "devices", params(("id" = String, Path, description = "The device id.")),
    request_body = UpdateRequest,
    responses(
        (status = 201, body = DeviceUpdate),
        (status = 404, body = ErrorBody, description = "No such device (`device.not_found`)."),
        (status = 409, body = ErrorBody, description = "The device has an update in flight (`device_update.already_active`)."),
        (status = 403, body = ErrorBody, description = "`allow_downgrade` from a role other than admin (`forbidden`)."),
        (status = 422, body = ErrorBody, description = "The firmware does not fit the device, is installed already, unknown, deprecated or unverified, or an earlier release than the device runs (`update.*`, `update.downgrade`)."),
))]
async fn update(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    Json(body): Json<UpdateRequest>,
) -> Result<(StatusCode, Json<DeviceUpdate>), ApiError> {
    let device = parse_device_id(&id)?;
    let firmware: FirmwareId =
        body.firmware_id.parse().map_err(|e| ApiError::invalid("invalid_field", format!("firmware_id: {e}")))?;
    if body.allow_downgrade && writer.principal.role != Role::Admin {
        return Err(ApiError::forbidden("only an admin may allow a downgrade (allow_downgrade)"));
    }
    if body.timeout_secs.is_some_and(|t| t == 0 || t > MAX_UPDATE_TIMEOUT_SECS) {
        let message = format!("timeout_secs: 1 to {MAX_UPDATE_TIMEOUT_SECS} seconds");
        return Err(ApiError::invalid("invalid_field", message));
    }
    let origin = Origin { timeout_secs: body.timeout_secs, ..Origin::default() };
    let policy = state.delivery().allowing_downgrade(body.allow_downgrade);
    let committed = assign_update(&state.store, &device, firmware, origin, policy, &writer.meta, Utc::now()).await?;
    let answer = update_answer(&device, committed.state, Some(writer.meta.actor.to_string()))?;
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Close the update now, without the device's agreement (a device that went
    /// silent would otherwise hold it, and block every later update, forever).
    #[serde(default)]
    force: bool,
}

/// Cancel the device's update in flight, whichever started it (a single update or
/// a campaign). One it has not fetched yet ends at once; otherwise the device is
/// asked (DDI `cancelAction`, NATS `cancel`) and the update ends when it agrees,
/// or at once with `force`.
#[utoipa::path(post, path = "/devices/{id}/update/cancel", tag = "devices", params(("id" = String, Path, description = "The device id.")),
    request_body(content = Option<CancelRequest>, description = "Optional: `{\"force\": true}`."),
    responses(
        (status = 200, body = DeviceUpdate, description = "Cancelled, or the device was asked (`cancel_requested`)."),
        (status = 404, body = ErrorBody, description = "The device never had an update (`device_update.none`)."),
        (status = 409, body = ErrorBody, description = "The update has ended (`device_update.not_active`)."),
))]
async fn cancel_update(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<DeviceUpdate>, ApiError> {
    let device = parse_device_id(&id)?;
    let CancelRequest { force } = crate::extract::optional_json(&body)?.unwrap_or_default();
    let command = DeviceUpdateCommand::Cancel { campaign: None, force, at: Utc::now() };
    let committed = state.store.execute::<UpdateStream>(&device, command, &writer.meta).await?;
    Ok(Json(update_answer(&device, committed.state, None)?))
}

/// The device's current (or last) update.
#[utoipa::path(get, path = "/devices/{id}/update", tag = "devices", params(("id" = String, Path, description = "The device id.")), responses(
    (status = 200, body = DeviceUpdate),
    (status = 404, body = ErrorBody, description = "The device never had an update (`not_found`)."),
))]
async fn current_update(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<DeviceUpdate>, ApiError> {
    let device = parse_device_id(&id)?;
    let record = ota_projections::updates::current_record(&state.pool, device.as_str()).await?;
    Ok(Json(DeviceUpdate::from_record(record.ok_or_else(|| ApiError::not_found("update for this device"))?)?))
}

/// Every update and rollback of the device, newest first.
#[utoipa::path(get, path = "/devices/{id}/history", operation_id = "device_history", tag = "devices", params(("id" = String, Path, description = "The device id."), Paging),
    responses((status = 200, body = Page<DeviceUpdate>)))]
async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<Json<Page<DeviceUpdate>>, ApiError> {
    let device = parse_device_id(&id)?;
    let records = ota_projections::updates::records(&state.pool, device.as_str(), paging.request()?).await?;
    Ok(Json(Page::from_view(records, DeviceUpdate::from_record)?))
}

/// Roll the device back to the firmware it ran before its last successful update.
#[utoipa::path(post, path = "/devices/{id}/rollback", tag = "devices", params(("id" = String, Path, description = "The device id.")), responses(
    (status = 201, body = DeviceUpdate, description = "A rollback was assigned (`kind`: `rollback`)."),
    (status = 404, body = ErrorBody, description = "No such device (`not_found`)."),
    (status = 409, body = ErrorBody, description = "An update is in flight, or nothing to roll back to (`device_update.already_active`, `device_update.no_rollback_target`)."),
    (status = 422, body = ErrorBody, description = "The image it would go back to is deprecated or lacks a signature the server requires (`update.deprecated_firmware`, `update.unverified_firmware`)."),
))]
async fn rollback(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeviceUpdate>), ApiError> {
    let device = parse_device_id(&id)?;
    let (registered, _) = state.store.load::<DeviceState>(&device).await?;
    if !registered.exists() {
        return Err(ApiError::not_found("device"));
    }
    ota_orchestrator::devices::check_rollback(&state.store, &device, state.delivery()).await?;
    let command = DeviceUpdateCommand::RollBack { origin: Origin::default(), at: Utc::now() };
    let committed = state.store.execute::<UpdateStream>(&device, command, &writer.meta).await?;
    let answer = update_answer(&device, committed.state, Some(writer.meta.actor.to_string()))?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// A device's status report (the native protocol over HTTP; the same body works on
/// NATS). The device itself (`TargetToken`, only for its own id) or an operator may send it.
#[utoipa::path(post, path = "/devices/{id}/status", tag = "devices", params(("id" = String, Path, description = "The device id.")),
    request_body = StatusReport,
    security(("bearer" = []), ("target_token" = [])),
    responses(
        (status = 200, body = DeviceUpdate, description = "Stored (durably) and applied."),
        (status = 401, body = ErrorBody, description = "No valid bearer token or target token (`unauthorized`)."),
        (status = 403, body = ErrorBody, description = "A viewer, or another device's token (`forbidden`)."),
        (status = 404, body = ErrorBody, description = "No update to report on (`device_update.none`, `device_update.unknown_action`)."),
        (status = 409, body = ErrorBody, description = "The update is closed (`device_update.not_active`)."),
        (status = 422, body = ErrorBody, description = "The body is not a status report, or the state cannot be reported (`invalid_field`, `device_update.*`)."),
))]
async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    credentials: super::ddi::Credentials,
    request: axum::extract::Request,
) -> Result<Json<DeviceUpdate>, ApiError> {
    let device = parse_device_id(&id)?;
    let authorization = credentials.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    // A device's own token, or no Authorization but its client certificate.
    let as_device = match authorization {
        Some(value) => value.starts_with("TargetToken "),
        None => credentials.certificate.is_some(),
    };
    let (mut parts, body) = request.into_parts();
    let meta = if as_device {
        let caller = super::ddi::authorize_device(&state, device.as_str(), &credentials).await?;
        ota_domain::CommandMeta::new(ota_domain::Actor::device(caller.to_string()))
    } else {
        let principal = Authenticator::from_ref(&state).bearer(&parts.headers).await?;
        parts.extensions.insert(principal);
        Writer::from_request_parts(&mut parts, &state).await?.meta
    };
    let Json(report) =
        Json::<StatusReport>::from_request(axum::extract::Request::from_parts(parts, body), &state).await?;
    let committed = state.reports.report(&device, report, &meta, Utc::now()).await?;
    state.ddi.targets.invalidate(device.as_str());
    let lane = committed.state.current.ok_or_else(|| ApiError::internal_text("update without lane"))?;
    let assigned_by = ota_projections::updates::record(&state.pool, device.as_str(), lane.action as i32)
        .await?
        .and_then(|record| record.assigned_by);
    Ok(Json(DeviceUpdate::from_lane(&device, lane, assigned_by)))
}
