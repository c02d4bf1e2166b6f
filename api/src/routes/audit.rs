//! The tamper-evident log over HTTP: verify the chain, export its signed head.

use axum::extract::State;
use ota_orchestrator::audit::{CampaignAtT, DeviceAtT, RunningAtT};
use ota_orchestrator::chain::{self, Head, Verification};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuditReader;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify))
        .routes(routes!(head))
        .routes(routes!(campaign_at))
        .routes(routes!(device_at))
        .routes(routes!(fleet_at))
}

/// Recompute the event hash chain; `ok` is false and `first_broken` names the first
/// edited, missing or inserted event if anything was tampered with.
#[utoipa::path(get, path = "/audit/verify", tag = "audit", responses((status = 200, body = Verification)))]
async fn verify(State(state): State<AppState>, _: AuditReader) -> Result<Json<Verification>, ApiError> {
    Ok(Json(chain::verify(&state.pool).await?))
}

/// The chain head, signed so it can be anchored elsewhere (a ticket, a transparency log).
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedHead {
    #[serde(flatten)]
    head: Head,
    /// Exactly the bytes signed.
    message: String,
    /// Hex ed25519 signature, and the hex public key it verifies with; absent without OTA_AUDIT_SIGNING_KEY.
    signature: Option<String>,
    public_key: Option<String>,
    signed_at: chrono::DateTime<chrono::Utc>,
}

/// The text signed; checkpoints sign the same, so `ota audit verify --anchor` takes either.
pub fn head_message(head: &Head, at: chrono::DateTime<chrono::Utc>) -> String {
    chain::head_message(head, at)
}

/// The chain head signed with OTA_AUDIT_SIGNING_KEY (ed25519), to anchor elsewhere.
#[utoipa::path(get, path = "/audit/head", tag = "audit", responses(
    (status = 200, body = SignedHead),
    (status = 404, body = ErrorBody, description = "No event is linked yet (`not_found`)."),
))]
async fn head(State(state): State<AppState>, _: AuditReader) -> Result<Json<SignedHead>, ApiError> {
    let head =
        chain::head(&state.pool).await?.ok_or_else(|| ApiError::not_found("chain head (no event linked yet)"))?;
    let signed_at = chrono::Utc::now();
    let message = head_message(&head, signed_at);
    let (signature, public_key) = match &state.audit_key {
        Some(key) => {
            use ed25519_dalek::Signer;
            let signature = key.sign(message.as_bytes());
            (Some(hex::encode(signature.to_bytes())), Some(hex::encode(key.verifying_key().to_bytes())))
        }
        None => (None, None),
    };
    Ok(Json(SignedHead { head, message, signature, public_key, signed_at }))
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AtQuery {
    /// The moment, RFC 3339 (e.g. `2026-11-27T10:00:00Z`); absent means now.
    #[param(format = DateTime)]
    at: Option<String>,
}

impl AtQuery {
    fn at(&self) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
        match &self.at {
            None => Ok(chrono::Utc::now()),
            Some(raw) => chrono::DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| ApiError::bad_request(format!("at: {e} (expected RFC 3339, e.g. 2026-11-27T10:00:00Z)"))),
        }
    }
}

impl From<ota_orchestrator::audit::AuditError> for ApiError {
    fn from(e: ota_orchestrator::audit::AuditError) -> Self {
        match e {
            ota_orchestrator::audit::AuditError::Database(e) => e.into(),
            corrupt => ApiError::internal(corrupt),
        }
    }
}

/// A campaign as it stood at `at`: status, waves with their devices' states, and every
/// event that led there with its actor. Folded from the event store, never a read model.
#[utoipa::path(get, path = "/audit/campaigns/{id}", tag = "audit", params(("id" = Uuid, Path), AtQuery), responses(
    (status = 200, body = CampaignAtT),
    (status = 404, body = ErrorBody, description = "The campaign did not exist at that time (`not_found`)."),
))]
async fn campaign_at(
    State(state): State<AppState>,
    _: AuditReader,
    Path(id): Path<String>,
    Query(q): Query<AtQuery>,
) -> Result<Json<CampaignAtT>, ApiError> {
    let id = crate::validate::uuid("id", &id).map(ota_domain::CampaignId::from_uuid)?;
    let audit = ota_orchestrator::audit::campaign_at(&state.pool, id, q.at()?).await?;
    if !audit.exists {
        return Err(ApiError::not_found("campaign at that time"));
    }
    Ok(Json(audit))
}

/// A device as it stood at `at`: inventory, running firmware, its update, and the events.
#[utoipa::path(get, path = "/audit/devices/{id}", tag = "audit", params(("id" = String, Path, description = "The device id."), AtQuery), responses(
    (status = 200, body = DeviceAtT),
    (status = 404, body = ErrorBody, description = "The device was not registered at that time (`not_found`)."),
))]
async fn device_at(
    State(state): State<AppState>,
    _: AuditReader,
    Path(id): Path<String>,
    Query(q): Query<AtQuery>,
) -> Result<Json<DeviceAtT>, ApiError> {
    let id = super::devices::parse_device_id(&id)?;
    let audit = ota_orchestrator::audit::device_at(&state.pool, id.as_str(), q.at()?).await?;
    if !audit.registered {
        return Err(ApiError::not_found("device at that time"));
    }
    Ok(Json(audit))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FleetAtT {
    at: chrono::DateTime<chrono::Utc>,
    devices: Vec<RunningAtT>,
}

/// Which firmware every device ran at `at`, and under which campaign it got there.
#[utoipa::path(get, path = "/audit/fleet", tag = "audit", params(AtQuery), responses((status = 200, body = FleetAtT)))]
async fn fleet_at(
    State(state): State<AppState>,
    _: AuditReader,
    Query(q): Query<AtQuery>,
) -> Result<Json<FleetAtT>, ApiError> {
    let at = q.at()?;
    Ok(Json(FleetAtT { at, devices: ota_orchestrator::audit::fleet_at(&state.pool, at).await? }))
}
