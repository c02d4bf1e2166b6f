//! Reading events straight from the event store: to fill a gap a projection
//! noticed, to fetch a payload too large for NATS, and to replay.

use std::collections::HashMap;

use ota_domain::EventRecord;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

const COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
                       global_seq, recorded_at";

fn decode(row: PgRow) -> Result<EventRecord, sqlx::Error> {
    let metadata: serde_json::Value = row.try_get("metadata")?;
    let metadata: HashMap<String, String> = serde_json::from_value(metadata)
        .map_err(|e| sqlx::Error::ColumnDecode { index: "metadata".into(), source: Box::new(e) })?;
    Ok(EventRecord {
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        global_seq: row.try_get("global_seq")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        payload_omitted: false,
        metadata,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// Events of one aggregate with `from <= sequence <= to`, in order.
pub async fn events_between(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    from: i64,
    to: i64,
) -> Result<Vec<EventRecord>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
         AND sequence BETWEEN $3 AND $4 ORDER BY sequence"
    );
    let rows = sqlx::query(&sql).bind(aggregate_type).bind(aggregate_id).bind(from).bind(to).fetch_all(conn).await?;
    rows.into_iter().map(decode).collect()
}

/// A page of events after `after_global_seq`, in global order, of the aggregate
/// and event types given (`None`: all); empty at the end.
/// Errors surface (postgres-es's replay stream ends silently on one).
pub async fn page_after(
    conn: &mut PgConnection,
    aggregate_types: Option<&[&str]>,
    event_types: Option<&[&str]>,
    after_global_seq: i64,
    limit: i64,
) -> Result<Vec<EventRecord>, sqlx::Error> {
    let owned = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE global_seq > $1
         AND ($2::text[] IS NULL OR aggregate_type = ANY($2))
         AND ($3::text[] IS NULL OR event_type = ANY($3)) ORDER BY global_seq LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(after_global_seq)
        .bind(aggregate_types.map(owned))
        .bind(event_types.map(owned))
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(decode).collect()
}
