//! The device inventory.

mod queries;

pub use queries::{count, get, list, DeviceFilter, DeviceView};

use ota_domain::device::{DeviceEvent, DeviceProfile};
use ota_domain::EventRecord;
use sqlx::PgConnection;

use crate::error::ProjectionError;
use crate::projection::{Projection, ProjectionName};

pub struct DevicesProjection;

impl Projection for DevicesProjection {
    const NAME: ProjectionName = ProjectionName::Devices;
    const TABLES: &'static [&'static str] = &["devices"];

    async fn apply(conn: &mut PgConnection, record: &EventRecord) -> Result<(), ProjectionError> {
        let event: DeviceEvent = record.decode().map_err(|e| ProjectionError::poison(record, e))?;
        let (profile, at): (DeviceProfile, _) = match event {
            DeviceEvent::DeviceRegistered { profile, at, .. } | DeviceEvent::DeviceProfileChanged { profile, at } => {
                (profile, at)
            }
        };
        let tags = serde_json::to_value(&profile.tags).map_err(|e| ProjectionError::poison(record, e))?;
        let attributes = serde_json::to_value(&profile.attributes).map_err(|e| ProjectionError::poison(record, e))?;
        sqlx::query(
            "INSERT INTO devices (id, device_model, hardware_version, firmware_version, tags, attributes,
                registered_at, updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$7)
             ON CONFLICT (id) DO UPDATE SET device_model = EXCLUDED.device_model,
                hardware_version = EXCLUDED.hardware_version, firmware_version = EXCLUDED.firmware_version,
                tags = EXCLUDED.tags, attributes = EXCLUDED.attributes, updated_at = EXCLUDED.updated_at",
        )
        .bind(&record.aggregate_id)
        .bind(&profile.device_model)
        .bind(&profile.hardware_version)
        .bind(&profile.firmware_version)
        .bind(tags)
        .bind(attributes)
        .bind(at)
        .execute(conn)
        .await?;
        Ok(())
    }
}
