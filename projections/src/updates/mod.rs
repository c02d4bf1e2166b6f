//! Device updates: the current update per device, every update's the
//! rollback log, and state counters per campaign wave and overall.
//!
//! A batch of events is folded in memory over the devices' current rows, then
//! written with a handful of set-based statements, whatever the batch size.

mod fold;
mod queries;
mod rollbacks;
mod write;

pub use queries::{
    campaign_devices, current_record, record, records, state_counts, wave_counts, wave_counts_of, CampaignDevice,
    UpdateRecord, UpdateView, WaveCounts,
};
pub use rollbacks::{rollbacks, RollbackEntry, RollbackFilter};

use ota_domain::device_update::DeviceUpdateEvent;
use ota_domain::EventRecord;
use sqlx::PgConnection;

use crate::error::ProjectionError;
use crate::projection::{apply_as_batch, Projection, ProjectionName};

pub struct UpdatesProjection;

impl Projection for UpdatesProjection {
    const NAME: ProjectionName = ProjectionName::Updates;
    const TABLES: &'static [&'static str] =
        &["device_updates", "update_history", "rollback_log", "campaign_wave_counts", "update_state_counts"];

    async fn apply(conn: &mut PgConnection, record: &EventRecord) -> Result<(), ProjectionError> {
        apply_as_batch::<Self>(conn, record).await
    }

    async fn apply_many(
        conn: &mut PgConnection,
        records: &[EventRecord],
    ) -> Result<Vec<(usize, String)>, ProjectionError> {
        let mut poison = Vec::new();
        let mut events = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            match record.decode::<DeviceUpdateEvent>() {
                Ok(event) => events.push((record, event)),
                Err(e) => poison.push((index, e.to_string())),
            }
        }
        let devices: Vec<String> = events.iter().map(|(r, _)| r.aggregate_id.clone()).collect();
        let current = write::load_current(conn, &devices).await?;
        let changes = fold::fold(current, &events);
        write::store(conn, &changes).await?;
        Ok(poison)
    }
}
