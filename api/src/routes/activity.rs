//! Who did what, when: one aggregate's events with their actors, from the activity log.

use axum::extract::State;
use ota_projections::activity::ActivityEntry;
use ota_projections::Page;

use super::validate;
use crate::error::ApiError;
use crate::extract::{Json, Paging, Path, Query};
use crate::state::AppState;

/// The history of the `aggregate` (a UUID-identified one) named in the path.
pub async fn history(
    aggregate: &'static str,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<Json<Page<ActivityEntry>>, ApiError> {
    let id = validate::uuid("id", &id)?;
    let page = ota_projections::activity::history(&state.pool, aggregate, &id.to_string(), paging.request()?).await?;
    Ok(Json(page))
}
