//! A projection worker: a durable JetStream pull consumer feeding one projection.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, stream, AckKind, Message};
use ota_domain::bus::BusNames;
use ota_domain::EventRecord;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::apply::{apply_records, lock_projection, record_undecodable, set_aside, Applied};
use crate::error::ProjectionError;
use crate::projection::{Projection, ProjectionName};

const BATCH: usize = 500;

/// How long a batch that is not yet full waits for more messages. A stream
/// yields at most 128 messages a turn (tokio's cooperative budget), so taking
/// only what was ready applied 60-128 events a transaction while thousands
/// waited (measured: 8.9k events/s for activity against a 113k msgs/s pull).
const GATHER: Duration = Duration::from_millis(10);

/// Messages asked of the server ahead of the batch being applied. async-nats asks
/// for more when half of what it asked for has arrived; with only one batch asked,
/// a worker that had fallen behind found a few dozen messages ready after each
/// commit (87 a batch, measured) instead of a full batch.
const PULL_AHEAD: usize = 4 * BATCH;

/// Creates the events stream if missing, and brings an existing one to the
/// configured retention (a stream from an earlier version had none and grew
/// without bound). Idempotent; the relay and every worker call it.
pub async fn ensure_events_stream(
    js: &jetstream::Context,
    names: &BusNames,
) -> Result<stream::Stream, async_nats::Error> {
    let retention = names.events_retention();
    let config = stream::Config {
        name: names.events_stream(),
        subjects: vec![names.all_events()],
        storage: stream::StorageType::File,
        num_replicas: names.replicas(),
        duplicate_window: Duration::from_secs(120),
        max_age: retention.max_age,
        max_bytes: retention.max_bytes,
        ..Default::default()
    };
    let stream = js.get_or_create_stream(config.clone()).await?;
    let current = &stream.cached_info().config;
    if current.max_age != config.max_age || current.max_bytes != config.max_bytes {
        tracing::info!(stream = config.name, max_age = ?config.max_age, max_bytes = config.max_bytes, "events stream retention updated");
        js.update_stream(config).await?;
        return Ok(js.get_stream(names.events_stream()).await?);
    }
    Ok(stream)
}

/// The durable consumer name of a projection.
pub fn consumer_name<P: Projection>(names: &BusNames) -> String {
    names.consumer(&format!("proj_{}", P::NAME))
}

pub struct WorkerHandle {
    pub projection: ProjectionName,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops the worker as a crash would: unacknowledged messages are redelivered.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn spawn_worker<P: Projection>(pool: PgPool, js: jetstream::Context, names: BusNames) -> WorkerHandle {
    let task = tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let began = std::time::Instant::now();
            let outcome = consume::<P>(&pool, &js, &names).await;
            // A subscription that ran a while was healthy: restart the backoff.
            if began.elapsed() > Duration::from_secs(30) {
                failures = 0;
            }
            if let Err(e) = outcome {
                failures += 1;
                tracing::warn!(
                    projection = %P::NAME,
                    error = &e as &dyn std::error::Error,
                    failures,
                    "projection worker interrupted; retrying"
                );
            }
            tokio::time::sleep(Duration::from_millis(200) * failures.clamp(1, 25)).await;
        }
    });
    WorkerHandle { projection: P::NAME, task }
}

async fn consume<P: Projection>(
    pool: &PgPool,
    js: &jetstream::Context,
    names: &BusNames,
) -> Result<(), ProjectionError> {
    let stream = ensure_events_stream(js, names).await.map_err(ProjectionError::Nats)?;
    let durable = consumer_name::<P>(names);
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: P::subject_filter(names),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| ProjectionError::Nats(Box::new(e)))?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(PULL_AHEAD)
        .messages()
        .await
        .map_err(|e| ProjectionError::Nats(Box::new(e)))?;
    let mut batches = std::pin::pin!(messages.chunks_timeout(BATCH, GATHER));
    while let Some(batch) = batches.next().await {
        let mut received = Vec::with_capacity(batch.len());
        let mut broken = None;
        for item in batch {
            match item {
                Ok(m) => received.push(m),
                Err(e) => broken = Some(ProjectionError::Nats(Box::new(e))),
            }
        }
        let mut attempts = 0u32;
        loop {
            match apply_batch::<P>(pool, &received).await {
                Ok(_) => {
                    for m in &received {
                        // A lost ack only means a redelivery, which the offsets make a no-op.
                        let _ = m.ack().await;
                    }
                    break;
                }
                // The same batch would fail the same way forever (a constraint, an
                // overflow): apply its events one by one and set aside the ones that fail.
                Err(ProjectionError::Database(e)) if is_deterministic(&e) => {
                    tracing::warn!(projection = %P::NAME, error = %e, "a batch fails on its data; applying it event by event");
                    isolate::<P>(pool, &received).await?;
                    for m in &received {
                        let _ = m.ack().await;
                    }
                    break;
                }
                // Postgres is away: retry the same batch on the same subscription.
                // Leaving it would strand the messages it has already received
                // beyond this batch until their ack_wait runs out.
                Err(ProjectionError::Database(e)) => {
                    attempts += 1;
                    tracing::warn!(projection = %P::NAME, error = %e, attempts, "cannot apply a batch; retrying");
                    tokio::time::sleep(Duration::from_millis(200) * attempts.min(10)).await;
                }
                Err(e) => {
                    for m in &received {
                        let _ = m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                    }
                    return Err(e);
                }
            }
        }
        if let Some(e) = broken {
            return Err(e);
        }
    }
    Ok(())
}

/// A data exception (SQLSTATE class 22) or an integrity violation (class 23): the
/// event's data, not the database's state, makes the statement fail, so a retry
/// fails again. Anything else (connections, lock timeouts, shutdowns) may pass later.
fn is_deterministic(error: &sqlx::Error) -> bool {
    let code = error.as_database_error().and_then(|e| e.code());
    code.is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
}

/// Applies a failing batch one message at a time; a message whose event fails on
/// its data is recorded in `projection_failures` with its offset moved past it, so
/// the events behind it go on. Outages still surface as errors (and are retried).
async fn isolate<P: Projection>(pool: &PgPool, messages: &[Message]) -> Result<(), ProjectionError> {
    for message in messages {
        match apply_batch::<P>(pool, std::slice::from_ref(message)).await {
            Ok(_) => {}
            Err(ProjectionError::Database(e)) if is_deterministic(&e) => {
                let Ok(record) = serde_json::from_slice::<EventRecord>(&message.payload) else { continue };
                let mut tx = pool.begin().await?;
                lock_projection::<P>(&mut tx).await?;
                set_aside::<P>(&mut tx, &record, &e.to_string()).await?;
                tx.commit().await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn apply_batch<P: Projection>(pool: &PgPool, messages: &[Message]) -> Result<Applied, ProjectionError> {
    let mut records: Vec<EventRecord> = Vec::with_capacity(messages.len());
    let mut not_events = Vec::new();
    for message in messages {
        match serde_json::from_slice(&message.payload) {
            Ok(record) => records.push(record),
            Err(e) => {
                let sequence = message.info().map_or(0, |info| info.stream_sequence);
                not_events.push((message.subject.to_string(), sequence, e.to_string()));
            }
        }
    }
    if records.is_empty() && not_events.is_empty() {
        return Ok(Applied::default());
    }
    let mut tx = pool.begin().await?;
    lock_projection::<P>(&mut tx).await?;
    for (subject, sequence, detail) in &not_events {
        record_undecodable::<P>(&mut tx, subject, *sequence, detail).await?;
    }
    let done = apply_records::<P>(&mut tx, &records).await?;
    tx.commit().await?;
    Ok(done)
}
