//! The firmware catalog.

mod queries;

pub use queries::{count, get, list, FirmwareFilter, FirmwareView};

use ota_domain::firmware::{FirmwareEvent, FirmwareStatus};
use ota_domain::EventRecord;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::projection::{Projection, ProjectionName};

pub struct FirmwareProjection;

impl Projection for FirmwareProjection {
    const NAME: ProjectionName = ProjectionName::Firmware;
    const TABLES: &'static [&'static str] = &["firmware"];

    async fn apply(conn: &mut PgConnection, record: &EventRecord) -> Result<(), ProjectionError> {
        let event: FirmwareEvent = record.decode().map_err(|e| ProjectionError::poison(record, e))?;
        let id = Uuid::parse_str(&record.aggregate_id).map_err(|e| ProjectionError::poison(record, e))?;
        match event {
            FirmwareEvent::FirmwareUploaded { spec, binary, signature, at, .. } => {
                let signature = serde_json::to_value(&signature).map_err(|e| ProjectionError::poison(record, e))?;
                let hardware =
                    serde_json::to_value(&spec.hardware_versions).map_err(|e| ProjectionError::poison(record, e))?;
                sqlx::query(
                    "INSERT INTO firmware (id, name, version, device_model, hardware_versions, release_notes, filename,
                        size, sha256, sha1, md5, storage_path, status, created_at, updated_at, created_by, signature)
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$14,$15,$16)",
                )
                .bind(id)
                .bind(&spec.name)
                .bind(&spec.version)
                .bind(&spec.device_model)
                .bind(hardware)
                .bind(&spec.release_notes)
                .bind(&binary.filename)
                .bind(binary.size as i64)
                .bind(&binary.sha256)
                .bind(&binary.sha1)
                .bind(&binary.md5)
                .bind(&binary.storage_path)
                .bind(FirmwareStatus::Active.as_str())
                .bind(at)
                .bind(record.meta().map(|m| m.actor.to_string()))
                .bind(signature)
                .execute(conn)
                .await?;
            }
            FirmwareEvent::FirmwareDeprecated { at, .. } => {
                sqlx::query("UPDATE firmware SET status = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(FirmwareStatus::Deprecated.as_str())
                    .bind(at)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}
