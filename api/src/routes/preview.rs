//! The plan preview (what-if): who a campaign would update, who it would leave
//! out and why, its waves, when they would run, and how its gates would decide
//! at an assumed failure rate. Nothing is written.

use axum::extract::State;
use chrono::Utc;
use ota_domain::campaign::Campaign as CampaignState;
use ota_domain::rollout::RolloutPlan;
use ota_domain::Refused;
use ota_orchestrator::preview::{self, Plan, Preview};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::campaigns::{load_deliverable, parse_firmware_id, parse_seed, rand_seed, TargetBody};
use crate::auth::{Role, Writer};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;
use crate::validate;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(preview_plan))
}

/// Longest assumed update: a day.
const MAX_UPDATE_SECS: u64 = 86_400;

/// A campaign as it would be created, and what to assume of the fleet.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "firmware_id": "3f1c2a9e-5d0b-5c8e-9a51-0d2f4b6e8a10",
    "target": {"filter": {"device_model": "gw"}},
    "rollout": {"waves": [{"percent": 5}, {"percent": 100}], "max_per_minute": 100,
                "failure_threshold_percent": 5, "min_finished": 10},
    "assume": {"failure_percent": 8, "update_secs": 900}
}))]
pub struct PreviewCampaign {
    /// Checked as at creation, so a create body can be previewed as it is.
    #[serde(default)]
    name: Option<String>,
    firmware_id: String,
    target: TargetBody,
    #[serde(default)]
    rollout: RolloutPlan,
    /// Decimal text; a fresh one is drawn without it. Start the campaign with
    /// the returned seed to get the previewed waves.
    #[serde(default)]
    seed: Option<String>,
    #[serde(default)]
    assume: Assume,
}

/// What the simulated rollout assumes of the fleet.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Assume {
    /// Share of update attempts that fail, 0 to 100 (default 0).
    failure_percent: u32,
    /// Seconds from an assignment to the device's final report, 1 to 86,400 (default 600).
    update_secs: u64,
}

impl Default for Assume {
    fn default() -> Self {
        Self { failure_percent: 0, update_secs: 600 }
    }
}

/// Preview a campaign before creating it: the devices it would update, those it
/// would leave out with the reason (unknown, other model or hardware, already
/// installed, a downgrade, busy with another update), its waves and their
/// members, when each wave would start under the rate and the maintenance
/// window, the expected duration, and the gates' decisions at an assumed
/// failure rate, simulated on the rollout's own rules. Nothing is written.
#[utoipa::path(post, path = "/campaigns/preview", operation_id = "preview_campaign", tag = "campaigns", request_body = PreviewCampaign, responses(
    (status = 200, body = Preview, description = "What starting this plan now would do."),
    (status = 403, body = ErrorBody, description = "`rollout.allow_downgrade` from a role other than admin (`forbidden`)."),
    (status = 422, body = ErrorBody, description = "A field is invalid, or the firmware is unknown, deprecated or unverified (`invalid_field`, `campaign.*`, `rollout.*`)."),
))]
async fn preview_plan(
    State(state): State<AppState>,
    writer: Writer,
    Json(body): Json<PreviewCampaign>,
) -> Result<Json<Preview>, ApiError> {
    if body.rollout.allow_downgrade && writer.principal.role != Role::Admin {
        return Err(ApiError::forbidden("only an admin may allow a downgrade (rollout.allow_downgrade)"));
    }
    if body.assume.failure_percent > 100 {
        let message = format!("assume.failure_percent: must be 0..=100, got {}", body.assume.failure_percent);
        return Err(ApiError::invalid("invalid_field", message));
    }
    if !(1..=MAX_UPDATE_SECS).contains(&body.assume.update_secs) {
        let message = format!("assume.update_secs: must be 1..={MAX_UPDATE_SECS}, got {}", body.assume.update_secs);
        return Err(ApiError::invalid("invalid_field", message));
    }
    let seed = body.seed.as_deref().map(parse_seed).transpose()?.unwrap_or_else(rand_seed);
    if let Some(name) = &body.name {
        validate::text("name", name, 200)?;
    }
    let target = body.target.parse()?;
    CampaignState::validate_plan(&target, &body.rollout)
        .map_err(|e| ApiError::refused(e.refusal(), e.code(), e.to_string()))?;
    let firmware_id = parse_firmware_id(&body.firmware_id)?;
    let (firmware, _) = load_deliverable(&state, firmware_id).await?;
    let plan = Plan {
        firmware_id,
        firmware: &firmware,
        target: &target,
        rollout: &body.rollout,
        seed,
        failure_percent: body.assume.failure_percent,
        update_secs: body.assume.update_secs,
    };
    let answer = preview::preview(&state.pool, &state.store, state.delivery(), &plan, Utc::now())
        .await
        .map_err(|e| ApiError::unavailable("inventory", e))?;
    Ok(Json(answer))
}
