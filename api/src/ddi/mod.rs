//! The hawkBit DDI device API under `/{tenant}/controller/v1/{controllerId}`, so
//! SWUpdate, rauc-hawkbit-updater and other hawkBit clients work unchanged.
//! The protocol rules live in `ota-ddi`; this module does the HTTP and the I/O.

mod downloads;
mod targets;

use std::sync::Arc;
use std::time::Duration;

use ota_ddi::{Links, UrlSigner};
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use downloads::{DownloadLog, Fetch};
pub use targets::{Target, Targets};

pub use ota_ddi::DEFAULT_TENANT as TENANT;

/// The DDI side of the server.
pub struct Ddi {
    pub targets: Arc<Targets>,
    pub contacts: Arc<crate::last_seen::LastSeen>,
    pub downloads: DownloadLog,
    pub links: Links,
    pub signer: UrlSigner,
    gateway_token_sha256: Option<[u8; 32]>,
    pub poll_secs: u64,
    pub poll_jitter_percent: u8,
    pub download_ttl_secs: i64,
    /// Hand artifact downloads to the object store by redirect (when it can pre-sign).
    pub redirect: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Ddi {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub struct DdiSettings {
    pub public_url: String,
    pub gateway_token: Option<String>,
    pub poll_secs: u64,
    pub poll_jitter_percent: u8,
    /// Devices kept in the DDI cache at most.
    pub cache_devices: usize,
    pub signer: UrlSigner,
    pub download_ttl_secs: u64,
    pub redirect: bool,
}

impl Ddi {
    /// Starts the cache follower, the last-seen writer and the download log.
    pub fn start(
        settings: DdiSettings,
        store: &ota_orchestrator::Store,
        reports: &ota_orchestrator::devices::Reports,
        pool: &sqlx::PgPool,
        nats: &async_nats::Client,
        names: &ota_domain::bus::BusNames,
    ) -> Self {
        let targets = Arc::new(Targets::new(store.clone(), pool.clone(), settings.cache_devices));
        let contacts = Arc::new(crate::last_seen::LastSeen::devices());
        let (downloads, log_task) = DownloadLog::spawn(reports.clone());
        let tasks = vec![
            tokio::spawn(targets.clone().follow(nats.clone(), names.clone())),
            tokio::spawn(contacts.clone().run(pool.clone(), Duration::from_secs(2))),
            log_task,
        ];
        Self {
            targets,
            contacts,
            downloads,
            links: Links::new(&settings.public_url),
            signer: settings.signer,
            gateway_token_sha256: settings
                .gateway_token
                .filter(|t| !t.is_empty())
                .map(|t| Sha256::digest(t.as_bytes()).into()),
            poll_secs: settings.poll_secs,
            poll_jitter_percent: settings.poll_jitter_percent,
            download_ttl_secs: i64::try_from(settings.download_ttl_secs).unwrap_or(i64::MAX / 2),
            redirect: settings.redirect,
            tasks,
        }
    }
}

/// A fresh device secret: 32 alphanumerics (about 190 bits), as hawkBit issues them.
pub fn new_token() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Ddi {
    /// Stores what waits in memory: download records and last-seen times (a graceful stop).
    pub async fn flush(&self, pool: &sqlx::PgPool) {
        self.downloads.flush().await;
        if let Err(e) = self.contacts.flush(pool).await {
            tracing::warn!(error = %e, "last-seen times not stored at shutdown");
        }
    }

    /// Whether `secret` is the gateway token; `None` when gateway tokens are off.
    pub fn is_gateway_token(&self, secret: &str) -> Option<bool> {
        let expected = self.gateway_token_sha256?;
        let given: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        Some(bool::from(expected.ct_eq(&given)))
    }
}
