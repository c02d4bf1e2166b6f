//! Signed checkpoints of the event chain, written every few minutes where the
//! server cannot change them afterwards: each one a new file or object named by
//! its position, created only if the name is free and never overwritten. Kept on
//! write-once storage, they anchor the chain against anyone who later gets the
//! database's keys (`ota audit verify --anchor`, docs/audit.md).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ota_api::storage::{BlobError, Blobs};
use ota_orchestrator::chain;
use sqlx::PgPool;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("reading the chain head: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] BlobError),
    #[error("{path}: {source}")]
    File { path: String, source: std::io::Error },
}

/// Where checkpoints go: a directory, or an object_store URL (`s3://bucket/prefix`).
#[derive(Clone)]
pub enum CheckpointTarget {
    Dir(PathBuf),
    Store(Blobs),
}

impl CheckpointTarget {
    pub fn open(location: &str) -> Result<Self, CheckpointError> {
        let dir = match location.strip_prefix("file://") {
            Some(path) => path,
            None if location.contains("://") => return Ok(Self::Store(Blobs::open(location)?)),
            None => location,
        };
        std::fs::create_dir_all(dir).map_err(|source| CheckpointError::File { path: dir.to_owned(), source })?;
        Ok(Self::Dir(PathBuf::from(dir)))
    }

    /// Writes a new file or object; `false` when the name is taken (then nothing changes).
    /// A directory gets the file created in place, never a temporary file renamed over
    /// it: in an append-only directory (`chattr +a`) nothing can be renamed or removed.
    async fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<bool, CheckpointError> {
        let dir = match self {
            Self::Store(blobs) => return Ok(blobs.put_new(name, bytes.into()).await?),
            Self::Dir(dir) => dir.clone(),
        };
        let path = dir.join(name);
        let shown = path.display().to_string();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            let mut file = match std::fs::File::options().write(true).create_new(true).open(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                opened => opened?,
            };
            file.write_all(&bytes)?;
            file.sync_all()?;
            Ok(true)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()));
        written.and_then(|w| w).map_err(|source| CheckpointError::File { path: shown, source })
    }
}

/// The name of the checkpoint at `position`: the same on every instance, sorted by position.
pub fn checkpoint_name(position: i64) -> String {
    format!("checkpoint-{position:020}.json")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpointed {
    /// A new checkpoint at this position.
    Written(i64),
    /// Another instance (or an earlier run) wrote this position's checkpoint.
    Existed(i64),
    /// The head has not moved since the last checkpoint, or nothing is linked yet.
    Unchanged,
}

/// Signs the current head and writes it, unless it is where `last` was.
pub async fn write_checkpoint(
    pool: &PgPool,
    key: &SigningKey,
    target: &CheckpointTarget,
    last: Option<i64>,
) -> Result<Checkpointed, CheckpointError> {
    let Some(head) = chain::head(pool).await? else { return Ok(Checkpointed::Unchanged) };
    if last == Some(head.position) {
        return Ok(Checkpointed::Unchanged);
    }
    let signed = chain::sign(&head, key, chrono::Utc::now());
    // Serialising strings and numbers cannot fail.
    let mut bytes = serde_json::to_vec_pretty(&signed).unwrap_or_default();
    bytes.push(b'\n');
    Ok(match target.put_new(&checkpoint_name(head.position), bytes).await? {
        true => Checkpointed::Written(head.position),
        false => Checkpointed::Existed(head.position),
    })
}

/// Writes a checkpoint now and then every `every` while the head moves. Every
/// instance may run it: the same position has the same name, so only one write lands.
pub fn spawn(pool: PgPool, key: SigningKey, target: CheckpointTarget, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = None;
        loop {
            tick.tick().await;
            match write_checkpoint(&pool, &key, &target, last).await {
                Ok(Checkpointed::Written(position)) => {
                    tracing::info!(position, "audit checkpoint written");
                    last = Some(position);
                }
                Ok(Checkpointed::Existed(position)) => last = Some(position),
                Ok(Checkpointed::Unchanged) => {}
                Err(e) => tracing::warn!(error = %e, "audit checkpoint not written; retrying"),
            }
        }
    })
}
