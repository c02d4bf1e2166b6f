//! The write side and its reactions: commands executed against aggregates in
//! the Postgres event store (cqrs-es + postgres-es, with conflict retry), and
//! the relay that publishes stored events to NATS JetStream in a safe order.
//!
//! Decisions are made in `ota-domain`; this crate only loads, decides, stores
//! and publishes.

pub mod devices;
pub mod dispatch;
pub mod membership;
pub mod relay;
pub mod rollout;
pub mod store;

pub use relay::{Relay, RelayError, RelayHandle};
pub use store::{Committed, Store, StoreError, Stored};
