//! Campaigns: create, lifecycle transitions, queries, statistics. Every answer
//! about a campaign is the one `resources::Campaign` shape.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use ota_domain::campaign::{
    Campaign as CampaignState, CampaignCommand, CampaignFirmware, CampaignStatus, Target, TargetFilter,
};
use ota_domain::device_update::UpdateState;
use ota_domain::firmware::{Firmware, Undeliverable};
use ota_domain::rollout::RolloutPlan;
use ota_domain::{CampaignId, DeviceId, FirmwareId};
use ota_projections::campaigns::CampaignFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Approver, Role, Writer};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{optional_json, Json, Paging, Path, Query};
use crate::resources::{Campaign, Page};
use crate::state::AppState;
use crate::validate;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one))
        .routes(routes!(start))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(approve))
        .routes(routes!(cancel))
        .routes(routes!(abort))
        .routes(routes!(devices))
        .routes(routes!(stats))
}

/// Largest explicit target list in one request.
const MAX_TARGET_DEVICES: usize = 100_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "gw-os 2.1.0 to the fleet",
    "firmware_id": "3f1c2a9e-5d0b-5c8e-9a51-0d2f4b6e8a10",
    "target": {"filter": {"device_model": "gw", "hardware_versions": ["rev-b"]}},
    "rollout": {
        "waves": [{"percent": 5}, {"percent": 50}, {"percent": 100}],
        "success_threshold_percent": 95, "failure_threshold_percent": 5, "min_finished": 10,
        "on_failure": "pause", "max_per_minute": 500, "device_timeout_secs": 3600, "max_retries": 1,
        "maintenance_window": {"start": "22:00", "duration_minutes": 240, "utc_offset": "+01:00"}
    }
}))]
pub struct CreateCampaign {
    /// 1 to 200 characters.
    name: String,
    /// The firmware to ship: it must exist, be active, and (with OTA_REQUIRE_SIGNED_FIRMWARE) verified.
    firmware_id: String,
    target: TargetBody,
    #[serde(default)]
    rollout: RolloutPlan,
}

/// Who a campaign targets: explicit device ids and/or a filter over the inventory.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    /// At most 100,000 ids.
    #[serde(default)]
    device_ids: Vec<String>,
    #[serde(default)]
    filter: Option<TargetFilter>,
    /// Devices that come to match the filter later join while the campaign runs.
    #[serde(default)]
    continuous: bool,
}

/// Create a campaign (a draft: nothing happens until it is started).
#[utoipa::path(post, path = "/campaigns", operation_id = "create_campaign", tag = "campaigns", request_body = CreateCampaign, responses(
    (status = 201, body = Campaign, description = "Created, as a draft."),
    (status = 403, body = ErrorBody, description = "`rollout.allow_downgrade` from a role other than admin (`forbidden`)."),
    (status = 422, body = ErrorBody, description = "A field is invalid, the firmware is unknown, deprecated or unverified, or the plan is inconsistent (`invalid_field`, `campaign.*`, `plan.*`)."),
))]
async fn create(
    State(state): State<AppState>,
    writer: Writer,
    Json(body): Json<CreateCampaign>,
) -> Result<(StatusCode, Json<Campaign>), ApiError> {
    let name = validate::text("name", &body.name, 200)?;
    if body.rollout.allow_downgrade && writer.principal.role != Role::Admin {
        return Err(ApiError::forbidden("only an admin may allow a downgrade (rollout.allow_downgrade)"));
    }
    let target = body.target.parse()?;
    let firmware = load_firmware(&state, parse_firmware_id(&body.firmware_id)?).await?;
    let id = CampaignId::new_random();
    let command = CampaignCommand::Create {
        id,
        name,
        firmware,
        target,
        rollout: body.rollout,
        created_by: writer.meta.actor.to_string(),
        at: Utc::now(),
    };
    let committed = state.store.execute::<CampaignState>(&id, command, &writer.meta).await?;
    Ok((StatusCode::CREATED, Json(Campaign::created(committed.state, writer.meta.actor.to_string())?)))
}

impl TargetBody {
    pub(super) fn parse(self) -> Result<Target, ApiError> {
        if self.device_ids.len() > MAX_TARGET_DEVICES {
            return Err(ApiError::invalid(
                "invalid_field",
                format!("target.device_ids: at most {MAX_TARGET_DEVICES} devices per request"),
            ));
        }
        let device_ids = self
            .device_ids
            .iter()
            .enumerate()
            .map(|(i, d)| {
                DeviceId::parse(d)
                    .map_err(|e| ApiError::invalid("invalid_field", format!("target.device_ids[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Target { device_ids, filter: self.filter, continuous: self.continuous })
    }
}

pub(super) fn parse_firmware_id(raw: &str) -> Result<FirmwareId, ApiError> {
    raw.parse().map_err(|e| ApiError::invalid("invalid_field", format!("firmware_id: {e}")))
}

/// The firmware must exist (in the event store, not merely in a lagging read
/// model) and be deliverable: active, and verified when the server requires it.
pub(super) async fn load_firmware(state: &AppState, id: FirmwareId) -> Result<CampaignFirmware, ApiError> {
    Ok(load_deliverable(state, id).await?.1)
}

/// `load_firmware`, with the firmware's whole state.
pub(super) async fn load_deliverable(
    state: &AppState,
    id: FirmwareId,
) -> Result<(Firmware, CampaignFirmware), ApiError> {
    let (firmware, _) = state.store.load::<Firmware>(&id).await?;
    state.delivery().admit(id, &firmware).map_err(refused_firmware)?;
    let spec = firmware.spec.as_ref().ok_or_else(|| refused_firmware(Undeliverable::Unknown(id)))?;
    let reference = CampaignFirmware {
        id,
        name: spec.name.clone(),
        version: spec.version.clone(),
        device_model: spec.device_model.clone(),
    };
    Ok((firmware, reference))
}

fn refused_firmware(refused: Undeliverable) -> ApiError {
    let code = match refused {
        Undeliverable::Unknown(_) => "campaign.unknown_firmware",
        Undeliverable::Deprecated(_) => "campaign.deprecated_firmware",
        Undeliverable::Unverified(_) => "campaign.unverified_firmware",
        Undeliverable::Downgrade { .. } => "campaign.downgrade",
    };
    ApiError::invalid(code, format!("firmware_id: {refused}"))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only campaigns in this status.
    status: Option<CampaignStatus>,
    #[serde(flatten)]
    #[param(ignore)]
    paging: Paging,
}

/// List campaigns, newest first.
#[utoipa::path(get, path = "/campaigns", operation_id = "list_campaigns", tag = "campaigns", params(ListQuery, Paging), responses(
    (status = 200, body = Page<Campaign>),
))]
async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<Page<Campaign>>, ApiError> {
    let page = q.paging.request()?;
    let filter = CampaignFilter { status: q.status };
    let views = ota_projections::campaigns::list(&state.pool, &filter, page).await?;
    let (total, page_no, page_size) = (views.total, views.page, views.page_size);
    let items = Campaign::from_views(&state.pool, views.items).await?;
    Ok(Json(Page { items, total, page: page_no, page_size }))
}

/// One campaign: status, waves with their devices' states, and every decision taken.
#[utoipa::path(get, path = "/campaigns/{id}", operation_id = "get_campaign", tag = "campaigns", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Campaign),
    (status = 404, body = ErrorBody, description = "No such campaign (`not_found`)."),
))]
async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Campaign>, ApiError> {
    let id = validate::uuid("id", &id)?;
    let view =
        ota_projections::campaigns::get(&state.pool, id).await?.ok_or_else(|| ApiError::not_found("campaign"))?;
    let mut campaigns = Campaign::from_views(&state.pool, vec![view]).await?;
    campaigns.pop().map(Json).ok_or_else(|| ApiError::not_found("campaign"))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DevicesQuery {
    /// Only devices whose update for this campaign is in this state.
    state: Option<UpdateState>,
    #[serde(flatten)]
    #[param(ignore)]
    paging: Paging,
}

/// A campaign's member device, with the state of its update.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignDevice {
    device_id: String,
    state: UpdateState,
    wave: Option<i32>,
    /// 0 for the first try.
    retry: i32,
    progress: Option<i16>,
    updated_at: DateTime<Utc>,
}

/// The campaign's devices that were assigned an update, with their state.
#[utoipa::path(get, path = "/campaigns/{id}/devices", operation_id = "list_campaign_devices", tag = "campaigns", params(("id" = Uuid, Path), DevicesQuery, Paging), responses(
    (status = 200, body = Page<CampaignDevice>),
))]
async fn devices(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DevicesQuery>,
) -> Result<Json<Page<CampaignDevice>>, ApiError> {
    let id = validate::uuid("id", &id)?;
    let page = ota_projections::updates::campaign_devices(&state.pool, id, q.state, q.paging.request()?).await?;
    let item = |d: ota_projections::updates::CampaignDevice| {
        Ok::<_, ApiError>(CampaignDevice {
            state: d.state.parse::<UpdateState>().map_err(ApiError::internal)?,
            device_id: d.device_id,
            wave: d.wave,
            retry: d.retry,
            progress: d.progress,
            updated_at: d.updated_at,
        })
    };
    Ok(Json(Page::from_view(page, item)?))
}

/// An optional reason, recorded with the pause, cancel or abort.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// 1 to 1,000 characters.
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
) -> Result<Json<Campaign>, ApiError> {
    let id = CampaignId::from_uuid(validate::uuid("id", id)?);
    let committed = state.store.execute::<CampaignState>(&id, command, &writer.meta).await?;
    Ok(Json(Campaign::from_state(&state.pool, committed.state).await?))
}

/// Start a draft: its target is resolved into waves now (recorded with the seed, so
/// the membership is reproducible), or it is scheduled for `rollout.start_at`.
/// A `seed` from a preview gives the waves the preview showed.
#[utoipa::path(post, path = "/campaigns/{id}/start", tag = "campaigns", params(("id" = Uuid, Path)),
    request_body(content = Option<StartBody>, description = "Optional; an empty body draws a fresh seed."),
    responses(
    (status = 200, body = Campaign, description = "Running (or scheduled)."),
    (status = 404, body = ErrorBody, description = "No such campaign (`campaign.not_found`)."),
    (status = 409, body = ErrorBody, description = "Not a draft (`campaign.invalid_transition`)."),
    (status = 422, body = ErrorBody, description = "No device matches the target (`campaign.no_members`), the firmware was deprecated since or lacks a signature the server requires (`campaign.deprecated_firmware`, `campaign.unverified_firmware`), or a seed was given for a scheduled start or is not a number (`invalid_field`)."),
))]
async fn start(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Campaign>, ApiError> {
    let id = CampaignId::from_uuid(validate::uuid("id", &id)?);
    let seed = optional_json::<StartBody>(&body)?.and_then(|b| b.seed).map(|s| parse_seed(&s)).transpose()?;
    let (campaign, _) = state.store.load::<CampaignState>(&id).await?;
    let now = Utc::now();
    let future_start = campaign.rollout.start_at.is_some_and(|t| t > now);
    if seed.is_some() && future_start {
        // A scheduled campaign draws its waves when it starts, from the inventory then.
        return Err(ApiError::invalid("invalid_field", "seed: only an immediate start takes a seed"));
    }
    // Deprecated, or unverified under a server that now requires signatures, since the draft was made.
    let firmware = campaign
        .firmware
        .as_ref()
        .filter(|_| campaign.rollback_of.is_none() && campaign.status == CampaignStatus::Draft);
    if let Some(firmware) = firmware {
        load_firmware(&state, firmware.id).await?;
    }
    let membership = if campaign.exists() && campaign.status == CampaignStatus::Draft && !future_start {
        let seed = seed.unwrap_or_else(rand_seed);
        Some(
            ota_orchestrator::membership::resolve(&state.pool, &campaign, seed)
                .await
                .map_err(|e| ApiError::unavailable("inventory", e))?,
        )
    } else {
        None
    };
    let command = CampaignCommand::Start { membership, at: now };
    let committed = state.store.execute::<CampaignState>(&id, command, &writer.meta).await?;
    Ok(Json(Campaign::from_state(&state.pool, committed.state).await?))
}

/// How to start a draft.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"seed": "8214397715561032448"}))]
pub struct StartBody {
    /// The seed a preview returned, as decimal text: the waves are drawn as the
    /// preview drew them. Only for an immediate start.
    seed: Option<String>,
}

/// A 64-bit seed as decimal text (JSON numbers lose digits past 2^53 in JavaScript).
pub(super) fn parse_seed(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::invalid("invalid_field", format!("seed: {raw:?} is not a whole number from 0 to {}", u64::MAX))
    })
}

/// A fresh seed per start; it is recorded, so the membership stays reproducible.
pub(super) fn rand_seed() -> u64 {
    let id = uuid::Uuid::new_v4();
    let bytes = id.as_bytes();
    u64::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]])
}

/// An admin approving a campaign it created says why; the reason is recorded with the approval.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// 1 to 1,000 characters. Only an admin may give one, and only it lets the
    /// campaign's creator approve its own wave.
    override_reason: Option<String>,
}

/// Approve the next wave of a campaign that waits for it (`after_success: "pause"`).
/// Four eyes: the `approver` or `admin` role, and not the campaign's creator
/// unless an admin records an `override_reason`.
#[utoipa::path(post, path = "/campaigns/{id}/approve", tag = "campaigns", params(("id" = Uuid, Path)),
    request_body(content = Option<ApproveBody>, description = "Optional; an empty body is fine."),
    responses(
        (status = 200, body = Campaign),
        (status = 403, body = ErrorBody, description = "Not an approver or admin (`forbidden`), an override from a non-admin (`forbidden`), or the campaign's creator without an override (`campaign.own_approval`)."),
        (status = 404, body = ErrorBody, description = "No such campaign (`campaign.not_found`)."),
        (status = 409, body = ErrorBody, description = "Nothing waits for approval (`campaign.nothing_to_approve`, `campaign.invalid_transition`)."),
        (status = 422, body = ErrorBody, description = "The body is not `{\"override_reason\"}` (`invalid_field`)."),
))]
async fn approve(
    State(state): State<AppState>,
    Approver(approver): Approver,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Campaign>, ApiError> {
    let override_reason = optional_json::<ApproveBody>(&body)?
        .and_then(|b| b.override_reason)
        .map(|r| validate::text("override_reason", &r, 1000))
        .transpose()?;
    if override_reason.is_some() && approver.principal.role != Role::Admin {
        return Err(ApiError::forbidden("only an admin may override four eyes (override_reason)"));
    }
    let command = CampaignCommand::Approve { by: approver.meta.actor.to_string(), override_reason, at: Utc::now() };
    transition(&state, &approver, &id, command).await
}

/// Pause a running campaign: no new assignments; devices in flight go on.
#[utoipa::path(post, path = "/campaigns/{id}/pause", tag = "campaigns", params(("id" = Uuid, Path)),
    request_body(content = Option<ReasonBody>, description = "Optional; an empty body is fine."),
    responses(
        (status = 200, body = Campaign),
        (status = 404, body = ErrorBody, description = "No such campaign (`campaign.not_found`)."),
        (status = 409, body = ErrorBody, description = "Not running (`campaign.invalid_transition`)."),
        (status = 422, body = ErrorBody, description = "The body is not `{\"reason\"}` (`invalid_field`)."),
))]
async fn pause(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Campaign>, ApiError> {
    let reason = reason(&body)?;
    transition(&state, &writer, &id, CampaignCommand::Pause { reason, gate: None, at: Utc::now() }).await
}

/// Resume a paused campaign.
#[utoipa::path(post, path = "/campaigns/{id}/resume", tag = "campaigns", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Campaign),
    (status = 404, body = ErrorBody, description = "No such campaign (`campaign.not_found`)."),
    (status = 409, body = ErrorBody, description = "Not paused (`campaign.invalid_transition`)."),
))]
async fn resume(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    transition(&state, &writer, &id, CampaignCommand::Resume { at: Utc::now() }).await
}

/// Abort a campaign for good: devices in flight are asked to cancel and, with
/// `rollback_on_abort`, a rollback campaign returns updated devices to their previous firmware.
#[utoipa::path(post, path = "/campaigns/{id}/abort", tag = "campaigns", params(("id" = Uuid, Path)),
    request_body(content = Option<ReasonBody>, description = "Optional; an empty body is fine."),
    responses(
        (status = 200, body = Campaign),
        (status = 404, body = ErrorBody, description = "No such campaign (`campaign.not_found`)."),
        (status = 409, body = ErrorBody, description = "Already ended (`campaign.invalid_transition`)."),
        (status = 422, body = ErrorBody, description = "The body is not `{\"reason\"}` (`invalid_field`)."),
))]
async fn abort(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Campaign>, ApiError> {
    let reason = reason(&body)?.unwrap_or_else(|| format!("aborted by {}", writer.meta.actor));
    transition(&state, &writer, &id, CampaignCommand::Abort { reason, gate: None, at: Utc::now() }).await
}

/// Cancel a campaign: the rest is never assigned; devices in flight are asked to cancel.
#[utoipa::path(post, path = "/campaigns/{id}/cancel", tag = "campaigns", params(("id" = Uuid, Path)),
    request_body(content = Option<ReasonBody>, description = "Optional; an empty body is fine."),
    responses(
        (status = 200, body = Campaign, description = "Cancelled: `unassigned` members stay so, `in_flight` devices were asked to cancel."),
        (status = 404, body = ErrorBody, description = "No such campaign (`campaign.not_found`)."),
        (status = 409, body = ErrorBody, description = "Already ended (`campaign.invalid_transition`)."),
        (status = 422, body = ErrorBody, description = "The body is not `{\"reason\"}` (`invalid_field`)."),
))]
async fn cancel(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Campaign>, ApiError> {
    let reason = reason(&body)?;
    transition(&state, &writer, &id, CampaignCommand::Cancel { reason, at: Utc::now() }).await
}

/// Fleet-wide figures, from incrementally kept counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    devices: i64,
    /// Devices by the firmware version they report running (`unknown` when none).
    devices_by_firmware: BTreeMap<String, i64>,
    firmware: i64,
    campaigns_by_status: BTreeMap<String, i64>,
    updates_by_state: BTreeMap<String, i64>,
    /// Succeeded over decided (succeeded, failed, timed out, rejected); null before any.
    success_rate: Option<f64>,
}

/// Devices (and by firmware version), firmware, campaigns by status, updates by state and the success rate.
#[utoipa::path(get, path = "/stats", tag = "system", responses((status = 200, body = Stats)))]
async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    let campaigns_by_status = ota_projections::campaigns::counts_by_status(&state.pool).await?;
    let firmware = ota_projections::firmware::count(&state.pool).await?;
    let devices = ota_projections::devices::count(&state.pool).await?;
    let devices_by_firmware = ota_projections::devices::counts_by_firmware(&state.pool).await?;
    let updates_by_state = ota_projections::updates::state_counts(&state.pool).await?;
    let n = |s: UpdateState| updates_by_state.get(s.as_str()).copied().unwrap_or(0);
    let succeeded = n(UpdateState::Succeeded);
    let decided = succeeded + n(UpdateState::Failed) + n(UpdateState::TimedOut) + n(UpdateState::Rejected);
    let success_rate = if decided > 0 { Some(succeeded as f64 / decided as f64) } else { None };
    Ok(Json(Stats { devices, devices_by_firmware, firmware, campaigns_by_status, updates_by_state, success_rate }))
}
