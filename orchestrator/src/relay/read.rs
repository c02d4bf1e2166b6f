//! Reading the event table in an order that never skips a late commit.
//!
//! Positions are handed out at INSERT, but transactions commit in any order, so
//! `global_seq > cursor` can pass over an event whose transaction commits late.
//! We read in (tx_id, global_seq) order and only rows written by transactions
//! older than every running one: nothing can later appear before the cursor.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ota_domain::EventRecord;
use sqlx::{PgConnection, PgPool, Row};

use super::RelayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Checkpoint {
    pub tx_id: i64,
    pub global_seq: i64,
}

pub struct PageRow {
    pub position: Checkpoint,
    pub record: EventRecord,
}

pub async fn checkpoint(conn: &mut PgConnection, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let row = sqlx::query("SELECT tx_id::text::bigint AS tx_id, global_seq FROM relay_checkpoint WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(row) => Checkpoint { tx_id: row.try_get("tx_id")?, global_seq: row.try_get("global_seq")? },
        None => Checkpoint::default(),
    })
}

pub async fn page(conn: &mut PgConnection, after: Checkpoint, limit: i64) -> Result<Vec<PageRow>, RelayError> {
    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
                global_seq, tx_id::text::bigint AS tx_id, recorded_at
         FROM events
         WHERE (tx_id, global_seq) > ($1::text::xid8, $2)
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
         -- Qualified: a bare `tx_id` here would name the bigint output column,
         -- and sorting by it cannot use the index, so every pending row was read.
         ORDER BY events.tx_id, events.global_seq
         LIMIT $3",
    )
    .bind(after.tx_id.to_string())
    .bind(after.global_seq)
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
        position: Checkpoint { tx_id: row.try_get("tx_id")?, global_seq },
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
        "INSERT INTO relay_checkpoint (name, tx_id, global_seq, published, updated_at)
         VALUES ($1, $2::text::xid8, $3, $4, now())
         ON CONFLICT (name) DO UPDATE
         SET tx_id = EXCLUDED.tx_id, global_seq = EXCLUDED.global_seq,
             published = relay_checkpoint.published + EXCLUDED.published, updated_at = now()",
    )
    .bind(name)
    .bind(to.tx_id.to_string())
    .bind(to.global_seq)
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
            WHERE (e.tx_id, e.global_seq) > COALESCE(
                (SELECT (c.tx_id, c.global_seq) FROM relay_checkpoint c WHERE c.name = $1),
                ('0'::xid8, 0::bigint))
            LIMIT 1000000) pending",
    )
    .bind(name)
    .fetch_one(pool)
    .await
}
