//! Reading the event table in position order, never past a late commit
//! (see `crate::horizon`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ota_domain::EventRecord;
use sqlx::{PgConnection, PgPool, Row};

use super::RelayError;

/// The position up to which every event has been published.
pub type Checkpoint = i64;

pub struct PageRow {
    pub position: Checkpoint,
    pub record: EventRecord,
}

pub async fn checkpoint(conn: &mut PgConnection, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let position: Option<i64> = sqlx::query_scalar("SELECT global_seq FROM relay_checkpoint WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(position.unwrap_or(0))
}

/// Events after `after` and at most `safe` (from `horizon::safe_position`).
pub async fn page(
    conn: &mut PgConnection,
    after: Checkpoint,
    safe: Checkpoint,
    limit: i64,
) -> Result<Vec<PageRow>, RelayError> {
    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
                global_seq, recorded_at
         FROM events
         WHERE global_seq > $1 AND global_seq <= $2
         ORDER BY global_seq
         LIMIT $3",
    )
    .bind(after)
    .bind(safe)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(decode).collect()
}

fn decode(row: sqlx::postgres::PgRow) -> Result<PageRow, RelayError> {
    let metadata: serde_json::Value = row.try_get("metadata")?;
    let metadata: HashMap<String, String> = serde_json::from_value(metadata).map_err(RelayError::Metadata)?;
    let recorded_at: DateTime<Utc> = row.try_get("recorded_at")?;
    let global_seq: i64 = row.try_get("global_seq")?;
    Ok(PageRow {
        position: global_seq,
        record: EventRecord {
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            global_seq,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            payload_omitted: false,
            metadata,
            recorded_at,
        },
    })
}

pub async fn advance(conn: &mut PgConnection, name: &str, to: Checkpoint, published: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO relay_checkpoint (name, global_seq, published, updated_at)
         VALUES ($1, $2, $3, now())
         ON CONFLICT (name) DO UPDATE
         SET global_seq = EXCLUDED.global_seq,
             published = relay_checkpoint.published + EXCLUDED.published, updated_at = now()",
    )
    .bind(name)
    .bind(to)
    .bind(published)
    .execute(conn)
    .await?;
    Ok(())
}

/// Events stored but not yet published (capped, for health reports).
pub async fn pending_count(pool: &PgPool, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (
            SELECT 1 FROM events e
            WHERE e.global_seq > COALESCE((SELECT c.global_seq FROM relay_checkpoint c WHERE c.name = $1), 0)
            LIMIT 1000000) pending",
    )
    .bind(name)
    .fetch_one(pool)
    .await
}
