use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::page::{snapshot, Page, PageRequest};

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct DeviceView {
    pub id: String,
    pub device_model: String,
    pub hardware_version: Option<String>,
    pub firmware_version: Option<String>,
    pub tags: serde_json::Value,
    pub attributes: serde_json::Value,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub device_model: Option<String>,
    pub hardware_version: Option<String>,
    pub firmware_version: Option<String>,
    pub tag: Option<String>,
}

/// `last_seen` comes from the polls' batched log, which survives a rebuild of this read model.
const COLUMNS: &str = "id, device_model, hardware_version, firmware_version, tags, attributes, registered_at, \
    updated_at, (SELECT c.last_seen FROM device_contact c WHERE c.device_id = devices.id) AS last_seen";
const WHERE: &str = "($1::text IS NULL OR device_model = $1) AND ($2::text IS NULL OR hardware_version = $2)
     AND ($3::text IS NULL OR firmware_version = $3) AND ($4::text IS NULL OR tags ? $4)";

pub async fn get(pool: &PgPool, id: &str) -> Result<Option<DeviceView>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM devices WHERE id = $1")).bind(id).fetch_optional(pool).await
}

pub async fn list(pool: &PgPool, f: &DeviceFilter, page: PageRequest) -> Result<Page<DeviceView>, sqlx::Error> {
    let mut snapshot = snapshot(pool).await?;
    let items = sqlx::query_as(&format!("SELECT {COLUMNS} FROM devices WHERE {WHERE} ORDER BY id LIMIT $5 OFFSET $6"))
        .bind(&f.device_model)
        .bind(&f.hardware_version)
        .bind(&f.firmware_version)
        .bind(&f.tag)
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(&mut *snapshot)
        .await?;
    let total = sqlx::query_scalar(&format!("SELECT count(*) FROM devices WHERE {WHERE}"))
        .bind(&f.device_model)
        .bind(&f.hardware_version)
        .bind(&f.firmware_version)
        .bind(&f.tag)
        .fetch_one(&mut *snapshot)
        .await?;
    snapshot.commit().await?;
    Ok(Page { items, total, page: page.page, page_size: page.page_size })
}

pub async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM devices").fetch_one(pool).await
}

/// Devices by the firmware version they report running (`unknown` when none).
pub async fn counts_by_firmware(pool: &PgPool) -> Result<std::collections::BTreeMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT COALESCE(firmware_version, 'unknown'), count(*) FROM devices GROUP BY 1")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// When the device last polled (DDI), from the batched contact log.
pub async fn last_seen(pool: &PgPool, id: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT last_seen FROM device_contact WHERE device_id = $1").bind(id).fetch_optional(pool).await
}
