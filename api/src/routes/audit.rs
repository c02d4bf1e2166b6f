//! The tamper-evident log over HTTP: verify the chain, export its signed head.

use axum::extract::State;
use ota_orchestrator::chain::{self, Head, Verification};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::Json;
use crate::state::AppState;

pub async fn verify(State(state): State<AppState>) -> Result<Json<Verification>, ApiError> {
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

pub async fn head(State(state): State<AppState>) -> Result<Json<SignedHead>, ApiError> {
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
