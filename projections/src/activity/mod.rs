//! The activity log: every event, who caused it and when, in applied order.

use chrono::{DateTime, Utc};
use ota_domain::EventRecord;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::error::ProjectionError;
use crate::page::{Page, PageRequest};
use crate::projection::{Projection, ProjectionName};

pub struct ActivityProjection;

impl Projection for ActivityProjection {
    const NAME: ProjectionName = ProjectionName::Activity;
    const TABLES: &'static [&'static str] = &["activity"];

    async fn apply(conn: &mut PgConnection, record: &EventRecord) -> Result<(), ProjectionError> {
        let meta = record.meta();
        sqlx::query(
            "INSERT INTO activity (aggregate_type, aggregate_id, sequence, global_seq, event_type, actor,
                request_id, causation_id, recorded_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        )
        .bind(&record.aggregate_type)
        .bind(&record.aggregate_id)
        .bind(record.sequence)
        .bind(record.global_seq)
        .bind(&record.event_type)
        .bind(meta.as_ref().map(|m| m.actor.to_string()))
        .bind(meta.as_ref().and_then(|m| m.request_id.clone()))
        .bind(meta.as_ref().and_then(|m| m.causation_id.clone()))
        .bind(record.recorded_at)
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
pub struct ActivityEntry {
    pub sequence: i64,
    pub global_seq: i64,
    pub event_type: String,
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub causation_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// One aggregate's history, oldest first.
pub async fn history(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    page: PageRequest,
) -> Result<Page<ActivityEntry>, sqlx::Error> {
    let items = sqlx::query_as(
        "SELECT sequence, global_seq, event_type, actor, request_id, causation_id, recorded_at FROM activity
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence LIMIT $3 OFFSET $4",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM activity WHERE aggregate_type = $1 AND aggregate_id = $2")
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_one(pool)
        .await?;
    Ok(Page { items, total, page: page.page, page_size: page.page_size })
}
