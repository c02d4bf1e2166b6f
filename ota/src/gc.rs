//! Garbage collection of firmware storage: staged uploads left by a crash
//! between staging and storing, and binaries whose firmware event never
//! committed. One instance collects at a time (a lease); each pass is safe to
//! repeat or to interrupt.

use std::collections::HashSet;
use std::time::Duration;

use ota_api::storage::{BlobError, Blobs, Collected};
use ota_orchestrator::lease::{self, Leadership};
use sqlx::PgPool;
use tokio::task::JoinHandle;

/// How often storage is swept.
const EVERY: Duration = Duration::from_secs(3600);
/// Objects younger than this are spared: an upload may still be running, or its
/// firmware event still on its way to the store.
pub const GRACE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Storage(#[from] BlobError),
    #[error(transparent)]
    Lease(#[from] lease::LeaseError),
}

/// The storage keys of every firmware ever uploaded, from the event store (a read
/// model could lag behind a firmware just stored).
async fn referenced(pool: &PgPool) -> Result<HashSet<String>, sqlx::Error> {
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT payload->'FirmwareUploaded'->'binary'->>'storage_path' FROM events
         WHERE aggregate_type = 'Firmware' AND event_type = 'FirmwareUploaded'",
    )
    .fetch_all(pool)
    .await?;
    Ok(keys.into_iter().collect())
}

/// One pass: what no firmware references and is older than `grace` goes.
pub async fn collect(pool: &PgPool, blobs: &Blobs, grace: Duration) -> Result<Collected, GcError> {
    let referenced = referenced(pool).await?;
    Ok(blobs.collect_garbage(&referenced, grace).await?)
}

pub fn spawn(pool: PgPool, blobs: Blobs, prefix: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let holder = lease::holder_id();
        loop {
            if let Err(e) = lead(&pool, &blobs, &holder, &prefix).await {
                tracing::warn!(error = %e, "storage garbage collection interrupted; retrying");
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    })
}

async fn lead(pool: &PgPool, blobs: &Blobs, holder: &str, prefix: &str) -> Result<(), GcError> {
    let leadership = Leadership::acquire(pool, &format!("storage-gc:{prefix}"), holder, lease::TTL).await?;
    let lease = leadership.lease.clone();
    let passes = async {
        loop {
            lease.progressed();
            let collected = collect(pool, blobs, GRACE).await?;
            if collected != Collected::default() {
                tracing::info!(staged = collected.staged, unreferenced = collected.unreferenced, "storage collected");
            }
            tokio::time::sleep(EVERY).await;
        }
    };
    leadership.lead(passes).await
}
