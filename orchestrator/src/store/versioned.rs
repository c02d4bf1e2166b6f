//! postgres-es's repository with our schema evolution around it.
//!
//! Events come out through the domain's upcaster chain (`ota_domain::upcast`),
//! the same one the batch loads, projections and audit use; a row of an unknown
//! version fails the load as a deserialization error instead of being decoded as
//! if it were current.
//!
//! Snapshots are written inside an envelope that names the aggregate's snapshot
//! version (`{"snapshot_version": n, "state": …}`). On load, a snapshot of another
//! version (or none: those from before the envelope) is deleted and the aggregate is rebuilt from its events; the next
//! commit past a snapshot boundary writes a fresh one. Deleting matters:
//! cqrs-es, given no snapshot, writes the next one as snapshot 1 with a new
//! `last_sequence`, which the table's key would let sit beside the stale row,
//! and a later load would pick either.

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use cqrs_es::Aggregate;
use ota_domain::upcast::{self, UpcastError};
use postgres_es::PostgresEventRepository;
use serde_json::{json, Value};
use sqlx::PgPool;

use super::{batch, commit};

/// The key of the snapshot envelope's version.
const VERSION_KEY: &str = "snapshot_version";
const STATE_KEY: &str = "state";

pub(crate) struct VersionedRepository {
    inner: PostgresEventRepository,
    pool: PgPool,
    snapshot_version: u32,
}

impl VersionedRepository {
    pub(crate) fn new(pool: PgPool, snapshot_version: u32) -> Self {
        Self { inner: PostgresEventRepository::new(pool.clone()), pool, snapshot_version }
    }

    /// Deletes every snapshot row of the aggregate (there should be one; a stale
    /// second one would be as wrong as the first).
    async fn drop_snapshot<A: Aggregate>(&self, aggregate_id: &str) -> Result<(), PersistenceError> {
        sqlx::query("DELETE FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2")
            .bind(A::TYPE)
            .bind(aggregate_id)
            .execute(&self.pool)
            .await
            .map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
        Ok(())
    }
}

/// A stored snapshot's state, if it was written at `version`.
pub(crate) fn open_envelope(payload: Value, version: u32) -> Option<Value> {
    match payload {
        Value::Object(mut fields) if fields.get(VERSION_KEY).and_then(Value::as_u64) == Some(u64::from(version)) => {
            fields.remove(STATE_KEY)
        }
        _ => None,
    }
}

fn seal_envelope(state: Value, version: u32) -> Value {
    json!({ VERSION_KEY: version, STATE_KEY: state })
}

/// A stored event brought to the current version of its type.
pub(crate) fn upcast_event(mut event: SerializedEvent) -> Result<SerializedEvent, UpcastError> {
    let payload = std::mem::take(&mut event.payload);
    event.payload = upcast::upcast(&event.aggregate_type, &event.event_type, &event.event_version, payload)?;
    if let Some(current) = upcast::current_version(&event.aggregate_type, &event.event_type) {
        event.event_version = current.to_owned();
    }
    Ok(event)
}

fn upcast_all(events: Vec<SerializedEvent>) -> Result<Vec<SerializedEvent>, PersistenceError> {
    events
        .into_iter()
        .map(|e| upcast_event(e).map_err(|e| PersistenceError::DeserializationError(Box::new(e))))
        .collect()
}

/// Replays through postgres-es's stream would skip the upcasters (and its stream
/// ends silently on a database error); our replays read `projections::event_log`.
#[derive(Debug, thiserror::Error)]
#[error("replay streams are not served by the command side's repository")]
struct NoReplayStreams;

impl PersistedEventRepository for VersionedRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        upcast_all(self.inner.get_events::<A>(aggregate_id).await?)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        upcast_all(self.inner.get_last_events::<A>(aggregate_id, last_sequence).await?)
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let Some(mut snapshot) = self.inner.get_snapshot::<A>(aggregate_id).await? else { return Ok(None) };
        // Not test-decoded here: a campaign's snapshot is megabytes, and a shape
        // change comes with a version bump (the domain's snapshot golden test).
        match open_envelope(std::mem::take(&mut snapshot.aggregate), self.snapshot_version) {
            Some(state) => {
                snapshot.aggregate = state;
                Ok(Some(snapshot))
            }
            None => {
                tracing::info!(aggregate = A::TYPE, aggregate_id, "stale snapshot dropped; rebuilding from events");
                self.drop_snapshot::<A>(aggregate_id).await?;
                Ok(None)
            }
        }
    }

    /// The group commit's insert and postgres-es's snapshot statements, in a
    /// transaction of our own, for two reasons: a lost answer to COMMIT is
    /// resolved (`commit`), and a snapshot that lost its race rolls the events
    /// back with it (postgres-es committed them and then reported a conflict, so
    /// the command was decided and stored again).
    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let failed = |e: sqlx::Error| match e.as_database_error().and_then(|d| d.code()) {
            Some(code) if code == "23505" => PersistenceError::OptimisticLockError,
            Some(_) => PersistenceError::UnknownError(Box::new(e)),
            None => PersistenceError::ConnectionError(Box::new(e)),
        };
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let inserted = batch::insert_rows(&mut tx, A::TYPE, events).await.map_err(failed)?;
        if !inserted.conflicted.is_empty() {
            // Another writer got to this sequence first; the transaction rolls back.
            return Err(PersistenceError::OptimisticLockError);
        }
        if let Some((aggregate_id, state, snapshot)) = snapshot_update {
            let last_sequence = events.last().map_or(0, |e| e.sequence) as i64;
            let statement = match snapshot {
                1 => {
                    "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
                         VALUES ($1, $2, $3, $4, $5)"
                }
                _ => {
                    "UPDATE snapshots SET last_sequence = $3, payload = $5, current_snapshot = $4
                         WHERE aggregate_type = $1 AND aggregate_id = $2 AND current_snapshot = $4 - 1"
                }
            };
            let written = sqlx::query(statement)
                .bind(A::TYPE)
                .bind(&aggregate_id)
                .bind(last_sequence)
                .bind(snapshot as i64)
                .bind(seal_envelope(state, self.snapshot_version))
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            if written.rows_affected() != 1 {
                return Err(PersistenceError::OptimisticLockError);
            }
        }
        commit::commit(&self.pool, tx, inserted.xid).await.map_err(|e| match e {
            commit::CommitError::Aborted(e) => failed(e),
            lost => PersistenceError::ConnectionError(Box::new(lost)),
        })
    }

    async fn stream_events<A: Aggregate>(&self, _aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        Err(PersistenceError::UnknownError(Box::new(NoReplayStreams)))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        Err(PersistenceError::UnknownError(Box::new(NoReplayStreams)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_snapshot_opens_at_its_own_version_only() {
        let state = json!({"name": "c"});
        assert_eq!(open_envelope(seal_envelope(state.clone(), 2), 2), Some(state.clone()));
        assert_eq!(open_envelope(seal_envelope(state.clone(), 1), 2), None);
        // Snapshots from before the envelope are the aggregate itself.
        assert_eq!(open_envelope(state, 1), None);
    }
}
