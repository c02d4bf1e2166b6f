//! The HTTP edge (axum) and the wiring of the whole server.
//!
//! Handlers parse and authorise requests, hand commands to the store and
//! answer from read models; rules live in `ota-domain`, persistence in
//! `ota-orchestrator` and `ota-projections`.

pub mod api_keys;
pub mod artifact;
pub mod auth;
pub mod blobs;
pub mod ddi;
pub mod error;
pub mod extract;
pub mod last_seen;
pub mod limits;
pub mod routes;
pub mod server;
pub mod settings;
pub mod signing;
pub mod simulate;
pub mod state;

pub use error::ApiError;
pub use server::{RunningServer, ServerError};
pub use settings::Settings;
pub use state::AppState;
