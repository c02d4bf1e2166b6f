//! From the event stream to the outbox: each event with a topic becomes one
//! pending delivery per subscription to that topic.
//!
//! A durable JetStream consumer feeds it, so a restart resumes where it was;
//! a redelivered event is queued once (the outbox's unique key). What is
//! queued comes from the event store, not the message: a record forged on
//! the bus, or one whose payload was too large to publish, is read back from
//! where it is authoritative. A subscription hears only of events stored
//! after it was created.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::{self, message::AckKind};
use futures::StreamExt;
use ota_domain::bus::BusNames;
use ota_domain::EventRecord;
use sqlx::PgPool;
use uuid::Uuid;

use crate::topics::{topics_of, Topic};

/// Events taken per pull.
const BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    #[error("NATS: {0}")]
    Nats(#[from] async_nats::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Consumes the event stream until it fails; the caller restarts it.
pub async fn run(pool: &PgPool, js: &jetstream::Context, names: &BusNames) -> Result<(), FanoutError> {
    let stream = ota_projections::worker::ensure_events_stream(js, names).await?;
    let durable = names.consumer("webhooks");
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: names.all_events(),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: ota_orchestrator::reaction_start(),
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| FanoutError::Nats(e.into()))?;
    let messages =
        consumer.stream().max_messages_per_batch(BATCH).messages().await.map_err(|e| FanoutError::Nats(e.into()))?;
    let mut batches = messages.ready_chunks(BATCH);
    while let Some(batch) = batches.next().await {
        for message in batch {
            let message = message.map_err(|e| FanoutError::Nats(e.into()))?;
            let record = serde_json::from_slice::<EventRecord>(&message.payload).ok();
            let topics = record.as_ref().map(topics_of).unwrap_or_default();
            if let (Some(record), false) = (record, topics.is_empty()) {
                if let Err(e) = enqueue(pool, &record, &topics).await {
                    tracing::warn!(error = %e, event = %record.event_id(), "webhook fan-out deferred");
                    message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await?;
                    continue;
                }
            }
            message.ack().await?;
        }
    }
    Ok(())
}

/// Queues the deliveries of one event, as the store holds it.
async fn enqueue(pool: &PgPool, seen: &EventRecord, topics: &[Topic]) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let stored = ota_projections::event_log::events_between(
        &mut conn,
        &seen.aggregate_type,
        &seen.aggregate_id,
        seen.sequence,
        seen.sequence,
    )
    .await?;
    let Some(record) = stored.into_iter().next().filter(|r| r.event_type == seen.event_type) else {
        tracing::warn!(event = %seen.event_id(), "an event on the bus the store does not hold: no webhook for it");
        return Ok(());
    };
    let event_key = record.event_id();
    for topic in topics {
        let subscribers: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM webhooks WHERE deleted_at IS NULL AND $1 = ANY(topics) AND created_at <= $2",
        )
        .bind(topic.as_str())
        .bind(record.recorded_at)
        .fetch_all(&mut *conn)
        .await?;
        for webhook_id in subscribers {
            let id = Uuid::new_v4();
            let body = crate::body(id, webhook_id, *topic, Some(&record));
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, webhook_id, topic, event_key, body) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (webhook_id, event_key, topic) DO NOTHING",
            )
            .bind(id)
            .bind(webhook_id)
            .bind(topic.as_str())
            .bind(&event_key)
            .bind(body)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
