//! How far each projection has got, for health reports.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ProjectionStatus {
    pub projection: String,
    pub applied: i64,
    pub last_global_seq: i64,
    pub rebuilt_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

pub async fn all(pool: &PgPool) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    sqlx::query_as("SELECT projection, applied, last_global_seq, rebuilt_at, updated_at FROM projection_status ORDER BY projection")
        .fetch_all(pool)
        .await
}

pub async fn failures(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM projection_failures").fetch_one(pool).await
}

/// Events each projection set aside (undecodable, or failing on their data), by projection.
pub async fn failures_by_projection(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT projection, count(*) FROM projection_failures GROUP BY projection").fetch_all(pool).await
}
