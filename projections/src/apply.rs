//! Applying an event exactly once in effect, in per-aggregate order.
//!
//! The offset row is read and advanced in the caller's transaction. A
//! redelivered event is skipped; an event that arrives after a gap (a lost or
//! reordered message) first pulls the missing ones from the event store.

use ota_domain::EventRecord;
use sqlx::PgConnection;

use crate::error::ProjectionError;
use crate::event_log;
use crate::projection::Projection;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub applied: u64,
    pub skipped: u64,
}

/// Serialises writers of one projection (workers, replays) for the transaction.
pub async fn lock_projection<P: Projection>(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('ota-projection:' || $1, 0))")
        .bind(P::NAME.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn apply_record<P: Projection>(
    conn: &mut PgConnection,
    record: &EventRecord,
) -> Result<Applied, ProjectionError> {
    let mut done = Applied::default();
    if !P::wants(record) {
        return Ok(done);
    }
    let last: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM projection_offsets
         WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
    )
    .bind(P::NAME.as_str())
    .bind(&record.aggregate_type)
    .bind(&record.aggregate_id)
    .fetch_optional(&mut *conn)
    .await?
    .unwrap_or(0);
    if record.sequence <= last {
        done.skipped += 1;
        return Ok(done);
    }
    let mut todo = Vec::new();
    if record.sequence > last + 1 || record.payload_omitted {
        // Read the gap (and a payload NATS did not carry) from the source of truth.
        let from = last + 1;
        todo = event_log::events_between(conn, &record.aggregate_type, &record.aggregate_id, from, record.sequence)
            .await?;
        if todo.last().map(|r| r.sequence) != Some(record.sequence) {
            return Err(ProjectionError::poison(record, "event announced by NATS is missing from the event store"));
        }
    }
    let owned;
    let records: &[EventRecord] = if todo.is_empty() {
        owned = [record.clone()];
        &owned
    } else {
        &todo
    };
    for r in records {
        apply_one::<P>(conn, r).await?;
        done.applied += 1;
    }
    sqlx::query(
        "INSERT INTO projection_offsets (projection, aggregate_type, aggregate_id, last_sequence)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (projection, aggregate_type, aggregate_id) DO UPDATE SET last_sequence = EXCLUDED.last_sequence",
    )
    .bind(P::NAME.as_str())
    .bind(&record.aggregate_type)
    .bind(&record.aggregate_id)
    .bind(record.sequence)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO projection_status (projection, applied, last_global_seq, updated_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (projection) DO UPDATE SET applied = projection_status.applied + EXCLUDED.applied,
           last_global_seq = GREATEST(projection_status.last_global_seq, EXCLUDED.last_global_seq), updated_at = now()",
    )
    .bind(P::NAME.as_str())
    .bind(done.applied as i64)
    .bind(record.global_seq)
    .execute(&mut *conn)
    .await?;
    Ok(done)
}

/// Applies one event; an undecodable one is recorded and passed over so it
/// cannot block the aggregates behind it. Projections decode before they write,
/// so a poison event has written nothing.
async fn apply_one<P: Projection>(conn: &mut PgConnection, record: &EventRecord) -> Result<(), ProjectionError> {
    match P::apply(conn, record).await {
        Err(ProjectionError::Poison { event_id, detail }) => {
            tracing::error!(projection = %P::NAME, event_id, detail, "undecodable event recorded and skipped");
            sqlx::query(
                "INSERT INTO projection_failures (projection, aggregate_type, aggregate_id, sequence, error)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(P::NAME.as_str())
            .bind(&record.aggregate_type)
            .bind(&record.aggregate_id)
            .bind(record.sequence)
            .bind(detail)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        other => other,
    }
}
