//! The device inventory.

mod queries;

pub use queries::{count, counts_by_firmware, get, last_seen, list, DeviceFilter, DeviceView};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ota_domain::device::{DeviceEvent, DeviceProfile};
use ota_domain::EventRecord;
use sqlx::PgConnection;

use crate::error::ProjectionError;
use crate::projection::{apply_as_batch, Projection, ProjectionName};

pub struct DevicesProjection;

impl Projection for DevicesProjection {
    const NAME: ProjectionName = ProjectionName::Devices;
    const TABLES: &'static [&'static str] = &["devices"];

    async fn apply(conn: &mut PgConnection, record: &EventRecord) -> Result<(), ProjectionError> {
        apply_as_batch::<Self>(conn, record).await
    }

    /// Each device's last profile in the batch wins; one upsert per batch.
    async fn apply_many(
        conn: &mut PgConnection,
        records: &[EventRecord],
    ) -> Result<Vec<(usize, String)>, ProjectionError> {
        let mut poison = Vec::new();
        let mut latest: BTreeMap<&str, (DeviceProfile, DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
        for (index, record) in records.iter().enumerate() {
            let (profile, at) = match record.decode::<DeviceEvent>() {
                Ok(
                    DeviceEvent::DeviceRegistered { profile, at, .. }
                    | DeviceEvent::DeviceProfileChanged { profile, at },
                ) => (profile, at),
                // Credentials stay in the event store; DDI reads them from there.
                Ok(DeviceEvent::DeviceTokenIssued { .. }) => continue,
                Err(e) => {
                    poison.push((index, e.to_string()));
                    continue;
                }
            };
            latest
                .entry(record.aggregate_id.as_str())
                .and_modify(|(p, _, last)| {
                    *p = profile.clone();
                    *last = at;
                })
                .or_insert((profile, at, at));
        }
        if latest.is_empty() {
            return Ok(poison);
        }
        let json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or(serde_json::Value::Null);
        let rows: Vec<_> = latest.iter().collect();
        sqlx::query(
            "INSERT INTO devices (id, device_model, hardware_version, firmware_version, tags, attributes,
                registered_at, updated_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[],
                $7::timestamptz[], $8::timestamptz[])
             ON CONFLICT (id) DO UPDATE SET device_model = EXCLUDED.device_model,
                hardware_version = EXCLUDED.hardware_version, firmware_version = EXCLUDED.firmware_version,
                tags = EXCLUDED.tags, attributes = EXCLUDED.attributes, updated_at = EXCLUDED.updated_at",
        )
        .bind(rows.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, (p, _, _))| p.device_model.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, (p, _, _))| p.hardware_version.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, (p, _, _))| p.firmware_version.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, (p, _, _))| json(serde_json::to_value(&p.tags))).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, (p, _, _))| json(serde_json::to_value(&p.attributes))).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, (_, first, _))| *first).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, (_, _, last))| *last).collect::<Vec<_>>())
        .execute(conn)
        .await?;
        Ok(poison)
    }
}
