//! Campaigns: create, lifecycle transitions, queries, statistics.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use ota_domain::campaign::{
    Campaign, CampaignCommand, CampaignError, CampaignFirmware, CampaignStatus, Target,
};
use ota_domain::firmware::{Firmware, FirmwareStatus};
use ota_domain::{CampaignId, DeviceId, FirmwareId, Refusal};
use ota_projections::campaigns::{CampaignFilter, CampaignView};
use ota_projections::Page;
use serde::{Deserialize, Serialize};

use super::validate;
use crate::auth::Writer;
use crate::error::{from_store, ApiError};
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    #[serde(default)]
    device_ids: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct CampaignBody {
    id: Option<CampaignId>,
    name: String,
    status: CampaignStatus,
    firmware: Option<CampaignFirmware>,
    target: Target,
    device_count: usize,
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
            device_count: c.target.device_ids.len(),
            target: c.target,
            created_at: c.created_at,
            started_at: c.started_at,
            ended_at: c.ended_at,
        }
    }
}

fn refusal(e: &CampaignError) -> (Refusal, &'static str) {
    (e.refusal(), e.code())
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
            DeviceId::parse(d).map_err(|e| {
                ApiError::invalid("invalid_field", format!("target.device_ids[{i}]: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let firmware_id: FirmwareId = body
        .firmware_id
        .parse()
        .map_err(|e| ApiError::invalid("invalid_field", format!("firmware_id: {e}")))?;
    let firmware = load_firmware(&state, firmware_id).await?;
    let id = CampaignId::new_random();
    let command = CampaignCommand::Create {
        id,
        name,
        firmware,
        target: Target { device_ids },
        at: Utc::now(),
    };
    let committed = state
        .store
        .execute::<Campaign>(&id.to_string(), command, &writer.meta)
        .await
        .map_err(|e| from_store(e, refusal))?;
    Ok((StatusCode::CREATED, Json(committed.state.into())))
}

/// The firmware must exist (in the event store, not merely in a lagging read model) and be active.
async fn load_firmware(state: &AppState, id: FirmwareId) -> Result<CampaignFirmware, ApiError> {
    let (firmware, _) = state
        .store
        .load::<Firmware>(&id.to_string())
        .await
        .map_err(|e| from_store(e, |e| (e.refusal(), e.code())))?;
    let Some(spec) = firmware.spec.as_ref() else {
        return Err(ApiError::invalid(
            "campaign.unknown_firmware",
            format!("firmware_id: no firmware {id}"),
        ));
    };
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
    if let Some(status) = &q.status {
        status
            .parse::<CampaignStatus>()
            .map_err(ApiError::bad_request)?;
    }
    let filter = CampaignFilter { status: q.status };
    Ok(Json(
        ota_projections::campaigns::list(&state.pool, &filter, page).await?,
    ))
}

pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = validate::uuid("id", &id)?;
    let campaign = ota_projections::campaigns::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    Ok(Json(campaign))
}

pub async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<impl IntoResponse, ApiError> {
    let id = validate::uuid("id", &id)?;
    let page = ota_projections::activity::history(
        &state.pool,
        "Campaign",
        &id.to_string(),
        paging.request()?,
    )
    .await?;
    Ok(Json(page))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason: Option<String>,
}

fn reason(body: &[u8]) -> Result<Option<String>, ApiError> {
    let reason = optional_json::<ReasonBody>(body)?.and_then(|b| b.reason);
    reason
        .map(|r| validate::text("reason", &r, 1000))
        .transpose()
}

async fn transition(
    state: &AppState,
    writer: &Writer,
    id: &str,
    command: CampaignCommand,
) -> Result<Json<CampaignBody>, ApiError> {
    let id = validate::uuid("id", id)?;
    let committed = state
        .store
        .execute::<Campaign>(&id.to_string(), command, &writer.meta)
        .await
        .map_err(|e| from_store(e, refusal))?;
    Ok(Json(committed.state.into()))
}

pub async fn start(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
) -> Result<Json<CampaignBody>, ApiError> {
    transition(
        &state,
        &writer,
        &id,
        CampaignCommand::Start { at: Utc::now() },
    )
    .await
}

pub async fn pause(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<CampaignBody>, ApiError> {
    let reason = reason(&body)?;
    transition(
        &state,
        &writer,
        &id,
        CampaignCommand::Pause {
            reason,
            at: Utc::now(),
        },
    )
    .await
}

pub async fn resume(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
) -> Result<Json<CampaignBody>, ApiError> {
    transition(
        &state,
        &writer,
        &id,
        CampaignCommand::Resume { at: Utc::now() },
    )
    .await
}

pub async fn cancel(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<CampaignBody>, ApiError> {
    let reason = reason(&body)?;
    transition(
        &state,
        &writer,
        &id,
        CampaignCommand::Cancel {
            reason,
            at: Utc::now(),
        },
    )
    .await
}

pub async fn stats(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let campaigns = ota_projections::campaigns::counts_by_status(&state.pool).await?;
    let firmware = ota_projections::firmware::count(&state.pool).await?;
    Ok(Json(
        serde_json::json!({ "firmware": firmware, "campaigns_by_status": campaigns }),
    ))
}
