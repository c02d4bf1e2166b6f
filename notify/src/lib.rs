//! Notifications: webhook subscriptions by topic, fed from the event stream
//! and delivered at least once, signed with HMAC-SHA256, retried with backoff,
//! every attempt logged.
//!
//! The fan-out (`fanout`) turns stored events into rows of an outbox table;
//! senders (`sender`) on any instance drain it. Subscriptions and their
//! secrets live in tables, not events: a secret must stay readable to sign
//! with, and events are published and kept for ever.

pub mod destinations;
pub mod fanout;
pub mod sender;
pub mod signature;
pub mod subscriptions;
pub mod topics;

use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use ota_domain::bus::BusNames;
use ota_domain::EventRecord;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use destinations::Destinations;
pub use sender::{DeliverySettings, Sender};
pub use subscriptions::{Attempt, CreatedWebhook, Delivery, NewWebhook, Webhook, WebhookError};
pub use topics::Topic;

/// The JSON a receiver gets. `event` is the stored event in the public record
/// shape of the NATS subjects (docs/events.md); absent for a test delivery.
pub(crate) fn body(id: Uuid, webhook_id: Uuid, topic: Topic, event: Option<&EventRecord>) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "webhook_id": webhook_id,
        "topic": topic.as_str(),
        "created_at": Utc::now(),
        "event": event,
    })
}

/// The fan-out and one sender, restarted whenever they fail; stopped on drop.
pub struct NotifyHandle {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for NotifyHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub fn spawn(pool: PgPool, js: jetstream::Context, names: BusNames, sender: Sender) -> NotifyHandle {
    let fanout = tokio::spawn(async move {
        loop {
            if let Err(e) = fanout::run(&pool, &js, &names).await {
                tracing::warn!(error = %e, "webhook fan-out interrupted; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    NotifyHandle { tasks: vec![fanout, tokio::spawn(sender.run())] }
}
