//! The write side and its reactions: commands executed against aggregates in
//! the Postgres event store (cqrs-es + postgres-es, with conflict retry), and
//! the relay that publishes stored events to NATS JetStream in a safe order.
//!
//! Decisions are made in `ota-domain`; this crate only loads, decides, stores
//! and publishes.

pub mod audit;
pub mod chain;
pub mod devices;
pub mod dispatch;
pub mod fit;
pub mod horizon;
pub mod inbox;
pub mod lease;
pub mod membership;
pub mod preview;
pub mod relay;
pub mod rollout;
pub mod store;

pub use relay::{Relay, RelayError, RelayHandle};
pub use store::{Cause, Committed, Store, StoreError, StoreFault, Stored};

use async_nats::jetstream::consumer::DeliverPolicy;

/// Where a reaction's durable consumer starts when it is first created: a few
/// minutes back, so events published while this process was starting (before
/// the consumer existed) are not skipped. Reactions are idempotent, so seeing an
/// event again is harmless; once the consumer exists, it resumes where it was.
pub fn reaction_start() -> DeliverPolicy {
    let since = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    match async_nats::datetime::parse_rfc3339(&since) {
        Ok(start_time) => DeliverPolicy::ByStartTime { start_time },
        Err(_) => DeliverPolicy::New,
    }
}
