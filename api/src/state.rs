use std::sync::Arc;

use async_nats::jetstream;
use ota_domain::bus::BusNames;
use ota_orchestrator::devices::Reports;
use ota_orchestrator::Store;
use sqlx::PgPool;

use crate::auth::Auth;
use crate::blobs::Blobs;
use crate::ddi::Ddi;

/// Everything a handler may need; cheap to clone.
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
    pub firmware_keys: Arc<ota_domain::signature::TrustedKeys>,
    pub require_signed_firmware: bool,
    /// When API keys were last used, written in batches.
    pub key_usage: Arc<crate::last_seen::LastSeen>,
    pub limits: Arc<crate::limits::Limits>,
}
