//! The activity log: every event, who caused it and when, in applied order.

use chrono::{DateTime, Utc};
use ota_domain::EventRecord;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::error::ProjectionError;
use crate::page::{snapshot, Page, PageRequest};
use crate::projection::{apply_as_batch, Projection, ProjectionName};

pub struct ActivityProjection;

impl Projection for ActivityProjection {
    const NAME: ProjectionName = ProjectionName::Activity;
    const TABLES: &'static [&'static str] = &["activity"];

    async fn apply(conn: &mut PgConnection, record: &EventRecord) -> Result<(), ProjectionError> {
        apply_as_batch::<Self>(conn, record).await
    }

    /// One multi-row insert per batch, in the batch's order (which `applied_order` keeps).
    async fn apply_many(
        conn: &mut PgConnection,
        records: &[EventRecord],
    ) -> Result<Vec<(usize, String)>, ProjectionError> {
        if records.is_empty() {
            return Ok(vec![]);
        }
        let metas: Vec<_> = records.iter().map(EventRecord::meta).collect();
        sqlx::query(
            "INSERT INTO activity (aggregate_type, aggregate_id, sequence, global_seq, event_type, actor,
                request_id, causation_id, recorded_at)
             SELECT t, i, s, g, e, a, r, c, at FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[]) WITH ORDINALITY
                AS u(t, i, s, g, e, a, r, c, at, n) ORDER BY n",
        )
        .bind(records.iter().map(|r| r.aggregate_type.clone()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.aggregate_id.clone()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.sequence).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.global_seq).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.event_type.clone()).collect::<Vec<_>>())
        .bind(metas.iter().map(|m| m.as_ref().map(|m| m.actor.to_string())).collect::<Vec<_>>())
        .bind(metas.iter().map(|m| m.as_ref().and_then(|m| m.request_id.clone())).collect::<Vec<_>>())
        .bind(metas.iter().map(|m| m.as_ref().and_then(|m| m.causation_id.clone())).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
        .execute(conn)
        .await?;
        Ok(vec![])
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    let mut snapshot = snapshot(pool).await?;
    let items = sqlx::query_as(
        "SELECT sequence, global_seq, event_type, actor, request_id, causation_id, recorded_at FROM activity
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence LIMIT $3 OFFSET $4",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *snapshot)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM activity WHERE aggregate_type = $1 AND aggregate_id = $2")
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_one(&mut *snapshot)
        .await?;
    snapshot.commit().await?;
    Ok(Page { items, total, page: page.page, page_size: page.page_size })
}
