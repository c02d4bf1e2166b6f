//! API keys as credentials: `ota_<key id>_<secret>`, of which only the SHA-256 of
//! the secret is stored, in the key's event stream. Issuing and revoking are
//! routes (`routes::api_keys`); this is the checking and the minting.

use std::sync::Arc;

use chrono::Utc;
use ota_domain::api_key::ApiKey;
use ota_orchestrator::Store;
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Principal, Role};
use crate::error::ApiError;
use crate::last_seen::LastSeen;

pub const KEY_PREFIX: &str = "ota_";

/// A key's secret half, and the stored form of it.
pub struct MintedKey {
    pub secret: String,
    pub secret_sha256: String,
}

impl MintedKey {
    pub fn new() -> Self {
        let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), 40);
        Self { secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())), secret }
    }

    /// What the caller presents: `ota_<id>_<secret>`.
    pub fn presented(&self, id: Uuid) -> String {
        format!("{KEY_PREFIX}{}_{}", id.simple(), self.secret)
    }
}

impl Default for MintedKey {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks API keys presented as bearer tokens, and notes when each was last used.
#[derive(Clone)]
pub struct ApiKeys {
    pub store: Store,
    pub usage: Arc<LastSeen>,
}

impl ApiKeys {
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let invalid = || ApiError::unauthorized("invalid API key");
        let rest = token.strip_prefix(KEY_PREFIX).ok_or_else(invalid)?;
        let (id, secret) = rest.split_once('_').ok_or_else(invalid)?;
        let id = Uuid::try_parse(id).map_err(|_| invalid())?;
        let (key, _) = self.store.load::<ApiKey>(&id).await.map_err(|e| ApiError::unavailable("event store", e))?;
        let given = hex::encode(Sha256::digest(secret.as_bytes()));
        let matches = bool::from(given.as_bytes().ct_eq(key.secret_sha256.as_bytes()));
        if !matches || key.id.is_none() {
            return Err(invalid());
        }
        if !key.is_valid_at(Utc::now()) {
            return Err(ApiError::unauthorized("the API key is revoked or expired"));
        }
        let role = Role::parse(&key.role).ok_or_else(invalid)?;
        self.usage.touch(&id.to_string(), Utc::now(), None);
        Ok(Principal { subject: format!("api-key:{id}"), role })
    }
}
