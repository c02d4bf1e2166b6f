//! The rollback log: what was rolled back, from which version to which, on
//! whose order, and how it ended; for one device or the whole fleet.

use axum::extract::State;
use ota_projections::updates::RollbackFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::devices::parse_device_id;
use crate::error::ApiError;
use crate::extract::{Json, Paging, Path, Query};
use crate::resources::{Page, Rollback};
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(fleet_rollbacks)).routes(routes!(device_rollbacks))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RollbackQuery {
    /// Only this device's rollbacks.
    device_id: Option<String>,
    /// Only the rollbacks of this (aborted) campaign.
    campaign_id: Option<Uuid>,
    #[serde(flatten)]
    #[param(ignore)]
    paging: Paging,
}

/// Every rollback in the fleet, newest first; by device or campaign if asked.
#[utoipa::path(get, path = "/rollbacks", tag = "devices", params(RollbackQuery, Paging),
    responses((status = 200, body = Page<Rollback>)))]
async fn fleet_rollbacks(
    State(state): State<AppState>,
    Query(q): Query<RollbackQuery>,
) -> Result<Json<Page<Rollback>>, ApiError> {
    let device = q.device_id.as_deref().map(parse_device_id).transpose()?.map(|d| d.to_string());
    let filter = RollbackFilter { device, campaign: q.campaign_id };
    let page = ota_projections::updates::rollbacks(&state.pool, &filter, q.paging.request()?).await?;
    Ok(Json(Page::from_view(page, |e| Ok::<_, ApiError>(Rollback::from(e)))?))
}

/// The device's rollbacks, newest first.
#[utoipa::path(get, path = "/devices/{id}/rollbacks", tag = "devices", params(("id" = String, Path, description = "The device id."), Paging),
    responses((status = 200, body = Page<Rollback>)))]
async fn device_rollbacks(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<Json<Page<Rollback>>, ApiError> {
    let device = parse_device_id(&id)?;
    let filter = RollbackFilter { device: Some(device.to_string()), campaign: None };
    let page = ota_projections::updates::rollbacks(&state.pool, &filter, paging.request()?).await?;
    Ok(Json(Page::from_view(page, |e| Ok::<_, ApiError>(Rollback::from(e)))?))
}
