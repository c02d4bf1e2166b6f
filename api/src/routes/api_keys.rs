//! Managing API keys: issued once by an admin (the key is shown only in that
//! answer), listed, revoked at once. Checking them is `auth::api_keys`.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use ota_domain::api_key::{ApiKey as ApiKeyState, ApiKeyCommand};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Admin, MintedKey, Role};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::resources::api_key::Provenance;
use crate::resources::ApiKey;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, issue)).routes(routes!(revoke))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ci pipeline", "role": "operator", "expires_at": "2027-06-01T00:00:00Z"}))]
pub struct IssueRequest {
    name: String,
    role: Role,
    /// Absent: the key never expires (until revoked).
    expires_at: Option<DateTime<Utc>>,
}

/// Issue an API key. The answer is the only time the key is shown.
#[utoipa::path(post, path = "/api-keys", operation_id = "issue_api_key", tag = "api-keys", request_body = IssueRequest, responses(
    (status = 201, body = ApiKey, description = "Issued; `key` is shown this once."),
    (status = 422, body = ErrorBody, description = "A field is invalid (`invalid_field`, `api_key.*`)."),
))]
async fn issue(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(body): Json<IssueRequest>,
) -> Result<(StatusCode, Json<ApiKey>), ApiError> {
    let id = Uuid::new_v4();
    let minted = MintedKey::new();
    let command = ApiKeyCommand::Issue {
        id,
        name: body.name,
        role: body.role.as_str().to_owned(),
        secret_sha256: minted.secret_sha256.clone(),
        expires_at: body.expires_at,
        at: Utc::now(),
    };
    let committed = state.store.execute::<ApiKeyState>(&id, command, &admin.meta).await?;
    let provenance =
        Provenance { id: id.to_string(), created_by: Some(admin.meta.actor.to_string()), last_used_at: None };
    let mut key = ApiKey::new(committed.state, Some(provenance))?;
    key.key = Some(minted.presented(id));
    Ok((StatusCode::CREATED, Json(key)))
}

/// Every key ever issued, revoked and expired ones included.
#[utoipa::path(get, path = "/api-keys", operation_id = "list_api_keys", tag = "api-keys", responses((status = 200, body = Vec<ApiKey>)))]
async fn list(State(state): State<AppState>, _admin: Admin) -> Result<Json<Vec<ApiKey>>, ApiError> {
    let mut keys = Vec::new();
    // Keys are few; each is read from its own stream.
    for provenance in ApiKey::provenance(&state.pool, None).await? {
        let id = Uuid::parse_str(&provenance.id).map_err(ApiError::internal)?;
        let (key, _) = state.store.load::<ApiKeyState>(&id).await?;
        keys.push(ApiKey::new(key, Some(provenance))?);
    }
    Ok(Json(keys))
}

/// Revoke a key: it stops working with the next request.
#[utoipa::path(delete, path = "/api-keys/{id}", operation_id = "revoke_api_key", tag = "api-keys", params(("id" = Uuid, Path)), responses(
    (status = 200, body = ApiKey),
    (status = 404, body = ErrorBody, description = "No such key (`api_key.not_found`)."),
    (status = 409, body = ErrorBody, description = "Already revoked (`api_key.revoked`)."),
))]
async fn revoke(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    let id = crate::validate::uuid("id", &id)?;
    let committed =
        state.store.execute::<ApiKeyState>(&id, ApiKeyCommand::Revoke { at: Utc::now() }, &admin.meta).await?;
    let provenance = ApiKey::provenance(&state.pool, Some(&[id.to_string()])).await?.pop();
    Ok(Json(ApiKey::new(committed.state, provenance)?))
}
