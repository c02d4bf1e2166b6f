//! The tamper-evident log over HTTP: verify the chain, export its signed head.

use axum::extract::State;
use ota_orchestrator::chain::{self, Head, Verification};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::Json;
use crate::state::AppState;

pub async fn verify(
    State(state): State<AppState>,
    _: crate::auth::AuditReader,
) -> Result<Json<Verification>, ApiError> {
    Ok(Json(chain::verify(&state.pool).await?))
}

/// The chain head, signed so it can be anchored elsewhere (a ticket, a transparency log).
#[derive(Debug, Serialize)]
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

pub fn head_message(head: &Head, at: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "ota-event-chain-head\nposition {}\nglobal_seq {}\nlink {}\nat {}",
        head.position,
        head.global_seq,
        head.link,
        at.to_rfc3339()
    )
}

pub async fn head(State(state): State<AppState>, _: crate::auth::AuditReader) -> Result<Json<SignedHead>, ApiError> {
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

#[derive(Debug, serde::Deserialize)]
pub struct AtQuery {
    /// RFC 3339; absent means now.
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

/// A campaign as it stood at `at`: status, waves with their devices' states, and every event that led there.
pub async fn campaign_at(
    State(state): State<AppState>,
    _: crate::auth::AuditReader,
    crate::extract::Path(id): crate::extract::Path<String>,
    crate::extract::Query(q): crate::extract::Query<AtQuery>,
) -> Result<Json<ota_orchestrator::audit::CampaignAtT>, ApiError> {
    let id = super::validate::uuid("id", &id).map(ota_domain::CampaignId::from_uuid)?;
    let audit = ota_orchestrator::audit::campaign_at(&state.pool, id, q.at()?).await?;
    if !audit.exists {
        return Err(ApiError::not_found("campaign at that time"));
    }
    Ok(Json(audit))
}

/// A device as it stood at `at`: inventory, running firmware, its update, and the events.
pub async fn device_at(
    State(state): State<AppState>,
    _: crate::auth::AuditReader,
    crate::extract::Path(id): crate::extract::Path<String>,
    crate::extract::Query(q): crate::extract::Query<AtQuery>,
) -> Result<Json<ota_orchestrator::audit::DeviceAtT>, ApiError> {
    let id = super::devices::parse_device_id(&id)?;
    let audit = ota_orchestrator::audit::device_at(&state.pool, id.as_str(), q.at()?).await?;
    if !audit.registered {
        return Err(ApiError::not_found("device at that time"));
    }
    Ok(Json(audit))
}

#[derive(Debug, Serialize)]
pub struct FleetAtT {
    at: chrono::DateTime<chrono::Utc>,
    devices: Vec<ota_orchestrator::audit::RunningAtT>,
}

/// Which firmware every device ran at `at`, and under which campaign it got there.
pub async fn fleet_at(
    State(state): State<AppState>,
    _: crate::auth::AuditReader,
    crate::extract::Query(q): crate::extract::Query<AtQuery>,
) -> Result<Json<FleetAtT>, ApiError> {
    let at = q.at()?;
    Ok(Json(FleetAtT { at, devices: ota_orchestrator::audit::fleet_at(&state.pool, at).await? }))
}
