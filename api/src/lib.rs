//! The HTTP edge (axum): the management API, the hawkBit DDI device API, and
//! what they stand on.
//!
//! Layers depend one way: `error`, `extract`, `validate` at the bottom; then
//! `auth`, `limits`, `storage`, `artifact`, `last_seen` and the `ddi` services;
//! then `state`, which holds them; then `routes`, which answer requests. Rules
//! live in `ota-domain`, persistence in `ota-orchestrator` and `ota-projections`,
//! and the server's wiring in the `ota` binary crate.

pub mod artifact;
pub mod auth;
pub mod client;
pub mod console;
pub mod ddi;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod last_seen;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod resources;
pub mod routes;
pub mod state;
pub mod storage;
pub mod validate;

pub use error::ApiError;
pub use routes::router;
pub use state::AppState;
