//! What handlers share: connections, the store, and the edge's services. Cheap to
//! clone. Middleware and extractors take only their part of it (`FromRef`).

use std::sync::Arc;

use async_nats::jetstream;
use axum::extract::FromRef;
use ota_domain::bus::BusNames;
use ota_domain::signature::TrustedKeys;
use ota_orchestrator::devices::Reports;
use ota_orchestrator::Store;
use sqlx::PgPool;

use crate::auth::{ApiKeys, Auth, Authenticator};
use crate::ddi::Ddi;
use crate::last_seen::LastSeen;
use crate::limits::Limits;
use crate::storage::Blobs;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub reports: Reports,
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub names: BusNames,
    pub blobs: Blobs,
    pub auth: Arc<Auth>,
    pub max_firmware_bytes: u64,
    pub ddi: Arc<Ddi>,
    /// Signs exported chain heads (OTA_AUDIT_SIGNING_KEY).
    pub audit_key: Option<Arc<ed25519_dalek::SigningKey>>,
    /// Public keys firmware may be signed with, and whether only verified firmware is accepted.
    pub firmware_keys: Arc<TrustedKeys>,
    pub require_signed_firmware: bool,
    /// Distinct trusted keys a release manifest needs.
    pub release_signature_threshold: usize,
    /// When API keys were last used, written in batches.
    pub key_usage: Arc<LastSeen>,
    pub limits: Arc<Limits>,
    /// What a Prometheus scraper must send (`OTA_METRICS_TOKEN`); none: `/metrics` is open.
    pub metrics_token: Option<Arc<str>>,
    /// Sends webhook deliveries; the API uses it for test sends.
    pub webhooks: ota_notify::Sender,
}

impl AppState {
    /// What may be delivered to devices, the same rule on every path.
    pub fn delivery(&self) -> ota_domain::firmware::DeliveryPolicy {
        ota_domain::firmware::DeliveryPolicy { require_signature: self.require_signed_firmware, allow_downgrade: false }
    }
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        Authenticator {
            tokens: state.auth.clone(),
            keys: ApiKeys { store: state.store.clone(), usage: state.key_usage.clone() },
            limits: state.limits.clone(),
        }
    }
}

impl FromRef<AppState> for Arc<Limits> {
    fn from_ref(state: &AppState) -> Self {
        state.limits.clone()
    }
}
