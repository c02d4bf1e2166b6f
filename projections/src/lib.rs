//! Read models built from events: the firmware catalog, campaigns and the
//! activity log. Each projection is a durable JetStream consumer that applies
//! an event and advances its per-aggregate offset in one Postgres transaction,
//! so redelivery is a no-op and a crash loses nothing. Any read model can be
//! rebuilt from the event store alone (`replay`).
//!
//! This crate never writes events; it only reads them.

pub mod activity;
pub mod apply;
pub mod campaigns;
pub mod devices;
pub mod downloads;
pub mod error;
pub mod event_log;
pub mod firmware;
pub mod page;
pub mod projection;
pub mod replay;
pub mod status;
pub mod updates;
pub mod worker;

pub use error::ProjectionError;
pub use page::{Page, PageRequest};
pub use projection::{Projection, ProjectionName};
pub use worker::{spawn_worker, WorkerHandle};

use async_nats::jetstream;
use ota_domain::bus::BusNames;
use sqlx::PgPool;

/// Starts one worker per projection.
pub fn spawn_all_workers(pool: &PgPool, js: &jetstream::Context, names: &BusNames) -> Vec<WorkerHandle> {
    ProjectionName::ALL.into_iter().map(|name| spawn_named(name, pool, js, names)).collect()
}

/// Starts the worker of one projection, chosen by name.
pub fn spawn_named(name: ProjectionName, pool: &PgPool, js: &jetstream::Context, names: &BusNames) -> WorkerHandle {
    let (pool, js, names) = (pool.clone(), js.clone(), names.clone());
    match name {
        ProjectionName::Firmware => spawn_worker::<firmware::FirmwareProjection>(pool, js, names),
        ProjectionName::Campaigns => spawn_worker::<campaigns::CampaignsProjection>(pool, js, names),
        ProjectionName::Activity => spawn_worker::<activity::ActivityProjection>(pool, js, names),
        ProjectionName::Devices => spawn_worker::<devices::DevicesProjection>(pool, js, names),
        ProjectionName::Updates => spawn_worker::<updates::UpdatesProjection>(pool, js, names),
        ProjectionName::Downloads => spawn_worker::<downloads::DownloadsProjection>(pool, js, names),
    }
}

/// Rebuilds one read model from the event store; returns the events applied.
pub async fn rebuild(pool: &PgPool, name: ProjectionName) -> Result<u64, ProjectionError> {
    match name {
        ProjectionName::Firmware => replay::rebuild::<firmware::FirmwareProjection>(pool).await,
        ProjectionName::Campaigns => replay::rebuild::<campaigns::CampaignsProjection>(pool).await,
        ProjectionName::Activity => replay::rebuild::<activity::ActivityProjection>(pool).await,
        ProjectionName::Devices => replay::rebuild::<devices::DevicesProjection>(pool).await,
        ProjectionName::Updates => replay::rebuild::<updates::UpdatesProjection>(pool).await,
        ProjectionName::Downloads => replay::rebuild::<downloads::DownloadsProjection>(pool).await,
    }
}
