//! Publishing pages of events to JetStream with deduplication ids.

use std::future::IntoFuture;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::future::try_join_all;
use ota_domain::bus::BusNames;
use ota_domain::EventRecord;

use super::read::PageRow;
use super::RelayError;

/// Larger payloads are announced without their body; consumers read it from Postgres.
const MAX_INLINE_PAYLOAD: usize = 512 * 1024;

fn encode(record: &EventRecord) -> Result<Bytes, RelayError> {
    let bytes = serde_json::to_vec(record).map_err(RelayError::Encode)?;
    if bytes.len() <= MAX_INLINE_PAYLOAD {
        return Ok(bytes.into());
    }
    let announced = EventRecord { payload: serde_json::Value::Null, payload_omitted: true, ..record.clone() };
    serde_json::to_vec(&announced).map(Bytes::from).map_err(RelayError::Encode)
}

/// The acknowledgements of a page that has been sent.
pub struct Sent {
    acks: Vec<PublishAckFuture>,
}

impl Sent {
    /// Waits for every acknowledgement. A duplicate ack (the message was already
    /// stored within the window) counts as success.
    pub async fn acknowledged(self) -> Result<(), RelayError> {
        try_join_all(self.acks.into_iter().map(IntoFuture::into_future))
            .await
            .map_err(|e| RelayError::Publish(Box::new(e)))?;
        Ok(())
    }
}

/// Sends a page, in order, without waiting for its acknowledgements.
pub async fn send_all(js: &jetstream::Context, names: &BusNames, page: &[PageRow]) -> Result<Sent, RelayError> {
    let mut acks = Vec::with_capacity(page.len());
    for row in page {
        let record = &row.record;
        let message = PublishMessage::build()
            .payload(encode(record)?)
            .message_id(record.event_id())
            .header("Ota-Global-Seq", record.global_seq.to_string().as_str());
        let subject = names.event_subject(&record.aggregate_type, &record.aggregate_id);
        acks.push(js.send_publish(subject, message).await.map_err(|e| RelayError::Publish(Box::new(e)))?);
    }
    Ok(Sent { acks })
}
