//! The `ota` binary's library: settings, the wiring of a whole server (which
//! `ota serve`, the tests and the benchmarks start the same way), the simulated
//! device fleet of the demo and the tests, release-signing tools and the CLI's
//! printing. It holds glue, not rules: those live in the other crates.

pub mod audit;
pub mod bus_accounts;
pub mod checkpoints;
pub mod gc;
pub mod nats;
pub mod print;
pub mod replay;
pub mod secret;
pub mod server;
pub mod settings;
pub mod signing;
pub mod simulate;
pub mod transport;

pub use secret::Secret;
pub use server::{RunningServer, ServerError};
pub use settings::Settings;
