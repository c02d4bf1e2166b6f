//! Test support: a whole server per test on its own database, NATS prefix and
//! storage directory (in-process, or the real binary as child processes), plus
//! a TCP proxy that can cut a dependency away.

mod app;
mod device_bus;
mod nats_cluster;
mod process;
mod proxy;
mod read_models;
mod secured_nats;
mod wait;

pub use app::{
    json_of, TestApp, TestOptions, AUDIENCE, AUDIT_KEY_HEX, GATEWAY_TOKEN, ISSUER, NATS, POSTGRES, SERVER_ROLE,
};
pub use device_bus::{BusClient, DeviceBus};
pub use nats_cluster::NatsCluster;
pub use ota::simulate::{Behavior, NatsFleet as Fleet};
pub use process::{free_port, killed_by, Deployment, ServerProcess};
pub use proxy::{AnswerLosingProxy, FaultProxy};
pub use read_models::read_models;
pub use secured_nats::{tls_files, SecuredNats};
pub use wait::{eventually, eventually_every};

/// Test logs only with `TEST_LOG=1`.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
            .with_test_writer()
            .try_init();
    }
}
