//! A draft campaign is changed or withdrawn before it starts; once started, its
//! definition is history (`campaign.invalid_transition`).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use ota_domain::campaign::{Campaign as CampaignState, CampaignCommand, CampaignError};
use ota_domain::rollout::RolloutPlan;
use ota_domain::CampaignId;
use ota_orchestrator::StoreError;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::campaigns::{load_firmware, parse_firmware_id, TargetBody};
use crate::auth::{Role, Writer};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::resources::Campaign;
use crate::state::AppState;
use crate::validate;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(edit, delete))
}

/// What to change; what is left out stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "gw-os 2.1.1 to the fleet", "rollout": {"waves": [{"percent": 10}, {"percent": 100}]}}))]
pub struct EditCampaign {
    name: Option<String>,
    firmware_id: Option<String>,
    target: Option<TargetBody>,
    /// Replaces the whole plan.
    rollout: Option<RolloutPlan>,
}

fn not_found() -> ApiError {
    StoreError::Rejected(CampaignError::NotFound).into()
}

/// Change a draft campaign: its name, firmware, target or plan, checked as at creation.
#[utoipa::path(patch, path = "/campaigns/{id}", tag = "campaigns", params(("id" = Uuid, Path)), request_body = EditCampaign, responses(
    (status = 200, body = Campaign, description = "The draft as it is now."),
    (status = 403, body = ErrorBody, description = "`rollout.allow_downgrade` from a role other than admin (`forbidden`)."),
    (status = 404, body = ErrorBody, description = "No such campaign (`campaign.not_found`)."),
    (status = 409, body = ErrorBody, description = "The campaign is no longer a draft (`campaign.invalid_transition`)."),
    (status = 422, body = ErrorBody, description = "A field is invalid, or the firmware cannot be shipped (`invalid_field`, `campaign.*`, `plan.*`)."),
))]
async fn edit(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    Json(body): Json<EditCampaign>,
) -> Result<Json<Campaign>, ApiError> {
    let id = CampaignId::from_uuid(validate::uuid("id", &id)?);
    if body.rollout.as_ref().is_some_and(|r| r.allow_downgrade) && writer.principal.role != Role::Admin {
        return Err(ApiError::forbidden("only an admin may allow a downgrade (rollout.allow_downgrade)"));
    }
    let (current, _) = state.store.load::<CampaignState>(&id).await?;
    let Some(firmware) = current.firmware.clone() else { return Err(not_found()) };
    let name = match &body.name {
        Some(name) => validate::text("name", name, 200)?,
        None => current.name.clone(),
    };
    let firmware = match &body.firmware_id {
        Some(raw) => load_firmware(&state, parse_firmware_id(raw)?).await?,
        None => firmware,
    };
    let target = match body.target {
        Some(target) => target.parse()?,
        None => current.target.clone(),
    };
    let rollout = body.rollout.unwrap_or_else(|| current.rollout.clone());
    let command = CampaignCommand::Edit { name, firmware, target, rollout, at: Utc::now() };
    let committed = state.store.execute::<CampaignState>(&id, command, &writer.meta).await?;
    let created_by = committed.state.created_by.clone().unwrap_or_default();
    Ok(Json(Campaign::created(committed.state, created_by)?))
}

/// Withdraw a draft campaign: it is gone from the lists; its events stay for the audit.
#[utoipa::path(delete, path = "/campaigns/{id}", tag = "campaigns", params(("id" = Uuid, Path)), responses(
    (status = 204, description = "Deleted."),
    (status = 404, body = ErrorBody, description = "No such campaign (`campaign.not_found`)."),
    (status = 409, body = ErrorBody, description = "The campaign is no longer a draft (`campaign.invalid_transition`)."),
))]
async fn delete(State(state): State<AppState>, writer: Writer, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = CampaignId::from_uuid(validate::uuid("id", &id)?);
    state.store.execute::<CampaignState>(&id, CampaignCommand::Delete { at: Utc::now() }, &writer.meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
