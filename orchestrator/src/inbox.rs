//! Durable device reports. A report published on `<prefix>.devices.<id>.report`
//! is kept by JetStream (a work queue) until an instance has stored it: reports
//! sent while no instance runs, or taken by one that froze or died before
//! storing them, are processed later rather than lost. (The request/reply
//! subject `.status` answers with the outcome, but only while an instance is
//! there to answer.) JetStream's acknowledgement is the device's reply.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use ota_domain::bus::BusNames;

use crate::devices::{BusReportError, Reports};
use crate::store::StoreError;

/// Reports kept for devices while nothing stores them, at most.
const KEEP_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
/// A report taken by an instance that died or froze is handed to another after this.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// Reports taken per pull.
const BATCH: usize = 500;
/// How long a batch that is not yet full waits for more reports.
const GATHER: Duration = Duration::from_millis(2);

pub async fn ensure_reports_stream(
    js: &jetstream::Context,
    names: &BusNames,
) -> Result<stream::Stream, async_nats::Error> {
    Ok(js
        .get_or_create_stream(stream::Config {
            name: names.reports_stream(),
            subjects: vec![names.all_device_reports()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: names.replicas(),
            max_age: KEEP_FOR,
            ..Default::default()
        })
        .await?)
}

/// Stores queued reports until the stream or the connection ends.
pub async fn receive_reports(
    reports: &Reports,
    js: &jetstream::Context,
    names: &BusNames,
) -> Result<(), async_nats::Error> {
    let stream = ensure_reports_stream(js, names).await?;
    let durable = names.consumer("reports");
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                ..Default::default()
            },
        )
        .await?;
    let messages = consumer.stream().max_messages_per_batch(BATCH).messages().await?;
    // Gathered over a moment: a stream yields at most 128 items a turn (tokio's
    // cooperative budget), which capped a batch at 128 devices.
    let mut batches = std::pin::pin!(tokio_stream::StreamExt::chunks_timeout(messages, BATCH, GATHER));
    while let Some(batch) = batches.next().await {
        // One device's reports in the order they came; devices concurrently.
        let mut by_device: HashMap<String, Vec<jetstream::Message>> = HashMap::new();
        for message in batch {
            let message = message?;
            by_device.entry(message.subject.to_string()).or_default().push(message);
        }
        futures::future::join_all(by_device.into_values().map(|queue| async move {
            for message in queue {
                let acked = match store(reports, &message.subject, &message.payload).await {
                    Stored::Done => message.ack().await,
                    Stored::Later => message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await,
                };
                if let Err(e) = acked {
                    tracing::warn!(error = %e, "device report not acknowledged; JetStream hands it out again");
                }
            }
        }))
        .await;
    }
    Ok(())
}

enum Stored {
    /// Stored, or refused for good (the refusal is logged; resending cannot help).
    Done,
    /// The store is unavailable: the report waits in the stream.
    Later,
}

async fn store(reports: &Reports, subject: &str, payload: &[u8]) -> Stored {
    match reports.report_from_bus(subject, payload).await {
        Ok(_) => Stored::Done,
        Err(BusReportError::Store(StoreError::Unavailable(_))) => Stored::Later,
        Err(e @ (BusReportError::NoDevice | BusReportError::Invalid(_))) => {
            tracing::warn!(subject, error = %e, "device report dropped");
            Stored::Done
        }
        Err(e) => {
            tracing::info!(subject, error = %e, "device report refused");
            Stored::Done
        }
    }
}
