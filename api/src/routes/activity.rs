//! Who did what, when: one aggregate's events with their actors, from the activity log.

use axum::extract::State;
use ota_projections::activity::ActivityEntry;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::{Json, Paging, Path, Query};
use crate::resources::Page;
use crate::state::AppState;
use crate::validate;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(firmware_history)).routes(routes!(campaign_history))
}

/// A firmware's events, oldest first, with who caused each.
#[utoipa::path(get, path = "/firmware/{id}/history", tag = "firmware", params(("id" = Uuid, Path), Paging),
    responses((status = 200, body = Page<ActivityEntry>)))]
async fn firmware_history(
    state: State<AppState>,
    id: Path<String>,
    paging: Query<Paging>,
) -> Result<Json<Page<ActivityEntry>>, ApiError> {
    history("Firmware", state, id, paging).await
}

/// A campaign's events, oldest first, with who caused each.
#[utoipa::path(get, path = "/campaigns/{id}/history", tag = "campaigns", params(("id" = Uuid, Path), Paging),
    responses((status = 200, body = Page<ActivityEntry>)))]
async fn campaign_history(
    state: State<AppState>,
    id: Path<String>,
    paging: Query<Paging>,
) -> Result<Json<Page<ActivityEntry>>, ApiError> {
    history("Campaign", state, id, paging).await
}

/// The history of the `aggregate` (a UUID-identified one) named in the path.
async fn history(
    aggregate: &'static str,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<Json<Page<ActivityEntry>>, ApiError> {
    let id = validate::uuid("id", &id)?;
    let page = ota_projections::activity::history(&state.pool, aggregate, &id.to_string(), paging.request()?).await?;
    Ok(Json(Page::from_view(page, Ok::<_, ApiError>)?))
}
