use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::page::{snapshot, Page, PageRequest};

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct FirmwareView {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub device_model: String,
    pub hardware_versions: serde_json::Value,
    pub release_notes: Option<String>,
    pub filename: String,
    pub size: i64,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    #[serde(skip)]
    pub storage_path: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<String>,
    /// The signature check made at upload.
    pub signature: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct FirmwareFilter {
    pub device_model: Option<String>,
}

const COLUMNS: &str = "id, name, version, device_model, hardware_versions, release_notes, filename, size, sha256, \
                       sha1, md5, storage_path, status, created_at, updated_at, created_by, signature";

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<FirmwareView>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM firmware WHERE id = $1")).bind(id).fetch_optional(pool).await
}

pub async fn list(
    pool: &PgPool,
    filter: &FirmwareFilter,
    page: PageRequest,
) -> Result<Page<FirmwareView>, sqlx::Error> {
    let mut snapshot = snapshot(pool).await?;
    let items = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM firmware WHERE ($1::text IS NULL OR device_model = $1)
         ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
    ))
    .bind(&filter.device_model)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *snapshot)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM firmware WHERE ($1::text IS NULL OR device_model = $1)")
        .bind(&filter.device_model)
        .fetch_one(&mut *snapshot)
        .await?;
    snapshot.commit().await?;
    Ok(Page { items, total, page: page.page, page_size: page.page_size })
}

pub async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM firmware").fetch_one(pool).await
}
