//! API keys: `ota_<key id>_<secret>`, issued once by an admin, stored as the
//! SHA-256 of the secret in the key's event stream, revocable at once.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use ota_domain::api_key::{ApiKey, ApiKeyCommand};
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::{Admin, Principal, Role};
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::state::AppState;

pub const KEY_PREFIX: &str = "ota_";

/// Checks an API key presented as a bearer token.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let invalid = || ApiError::unauthorized("invalid API key");
    let rest = token.strip_prefix(KEY_PREFIX).ok_or_else(invalid)?;
    let (id, secret) = rest.split_once('_').ok_or_else(invalid)?;
    let id = Uuid::try_parse(id).map_err(|_| invalid())?;
    let (key, _) =
        state.store.load::<ApiKey>(&id.to_string()).await.map_err(|e| ApiError::unavailable("event store", e))?;
    let given = hex::encode(Sha256::digest(secret.as_bytes()));
    let matches = bool::from(given.as_bytes().ct_eq(key.secret_sha256.as_bytes()));
    if !matches || key.id.is_none() {
        return Err(invalid());
    }
    if !key.is_valid_at(Utc::now()) {
        return Err(ApiError::unauthorized("the API key is revoked or expired"));
    }
    let role = Role::parse(&key.role).ok_or_else(invalid)?;
    state.key_usage.touch(&id.to_string(), Utc::now(), None);
    Ok(Principal { subject: format!("api-key:{id}"), role })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    name: String,
    role: String,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct KeyView {
    id: Uuid,
    name: String,
    role: String,
    created_at: Option<DateTime<Utc>>,
    created_by: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct IssuedKey {
    #[serde(flatten)]
    view: KeyView,
    /// Shown once; only its hash is kept.
    key: String,
}

fn view(key: ApiKey, created_by: Option<String>, last_used_at: Option<DateTime<Utc>>) -> KeyView {
    KeyView {
        id: key.id.unwrap_or_default(),
        name: key.name,
        role: key.role,
        created_at: key.created_at,
        created_by,
        expires_at: key.expires_at,
        revoked_at: key.revoked_at,
        last_used_at,
    }
}

pub async fn issue(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(body): Json<IssueRequest>,
) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError::invalid("invalid_field", "role: one of admin, operator, viewer, auditor"))?;
    let id = Uuid::new_v4();
    let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), 40);
    let command = ApiKeyCommand::Issue {
        id,
        name: body.name,
        role: role.as_str().to_owned(),
        secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        expires_at: body.expires_at,
        at: Utc::now(),
    };
    let committed =
        state.store.execute::<ApiKey>(&id.to_string(), command, &admin.meta).await.map_err(ApiError::from)?;
    let key = format!("{KEY_PREFIX}{}_{secret}", id.simple());
    let created_by = Some(admin.meta.actor.to_string());
    Ok((StatusCode::CREATED, Json(IssuedKey { view: view(committed.state, created_by, None), key })))
}

/// Every key ever issued (keys are few; each is read from its own stream).
pub async fn list(State(state): State<AppState>, Admin(_): Admin) -> Result<Json<Vec<KeyView>>, ApiError> {
    let rows: Vec<(String, Option<String>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT e.aggregate_id, e.metadata->>'actor_kind' || ':' || (e.metadata->>'actor_id'), u.last_used_at
         FROM events e LEFT JOIN api_key_usage u ON u.key_id = e.aggregate_id
         WHERE e.aggregate_type = 'ApiKey' AND e.sequence = 1 ORDER BY e.global_seq",
    )
    .fetch_all(&state.pool)
    .await?;
    let mut keys = Vec::with_capacity(rows.len());
    for (id, created_by, last_used_at) in rows {
        let (key, _) = state.store.load::<ApiKey>(&id).await.map_err(ApiError::from)?;
        keys.push(view(key, created_by, last_used_at));
    }
    Ok(Json(keys))
}

/// Revokes a key: it stops working with the next request.
pub async fn revoke(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let id = Uuid::try_parse(&id).map_err(|e| ApiError::bad_request(format!("id: {e}")))?;
    let committed = state
        .store
        .execute::<ApiKey>(&id.to_string(), ApiKeyCommand::Revoke { at: Utc::now() }, &admin.meta)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(view(committed.state, None, None)))
}
