//! Who the caller is: what a console needs to show only what the role may do.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::extract::Json;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

/// The authenticated caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The token's subject, or `api-key:<id>` for an API key.
    subject: String,
    role: Role,
    /// What the role may do: `read`, `write`, `approve`, `audit`, `admin`.
    may: Vec<&'static str>,
}

/// The caller's identity and role, as the server sees its token or key.
#[utoipa::path(get, path = "/me", operation_id = "whoami", tag = "system", responses((status = 200, body = Me)))]
async fn me(who: Principal) -> Result<Json<Me>, ApiError> {
    let role = who.role;
    let may = [
        ("read", true),
        ("write", role.can_write()),
        ("approve", role.can_approve()),
        ("audit", role.can_audit()),
        ("admin", role == Role::Admin),
    ]
    .into_iter()
    .filter_map(|(what, yes)| yes.then_some(what))
    .collect();
    Ok(Json(Me { subject: who.subject, role, may }))
}
