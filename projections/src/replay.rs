//! Rebuilding a read model from the event store alone.
//!
//! A rebuild reads the store itself, in global order, so the checks a live
//! worker makes per batch (offsets read back, gaps filled from the store)
//! cannot find anything: offsets are kept in memory and written once at the
//! end. The counts it leaves are the ones a live worker leaves for the same
//! events, so a replayed model equals the live one row for row.

use std::collections::HashMap;

use sqlx::PgPool;

use crate::apply::{lock_projection, record_poison, save_offsets, Key};
use crate::error::ProjectionError;
use crate::event_log;
use crate::projection::Projection;

/// Events read per statement. Larger pages cost memory for no more speed.
const REPLAY_PAGE: i64 = 5000;

/// Offsets written per statement at the end.
const OFFSETS_PER_STATEMENT: usize = 20_000;

/// Empties the projection's tables and applies every stored event again, in
/// global order, in one transaction: readers see the old model until the new
/// one commits, and live workers wait on the projection lock meanwhile.
/// Returns the number of events applied.
pub async fn rebuild<P: Projection>(pool: &PgPool) -> Result<u64, ProjectionError> {
    let mut tx = pool.begin().await?;
    lock_projection::<P>(&mut tx).await?;
    for table in P::TABLES {
        sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
    }
    for table in ["projection_offsets", "projection_status", "projection_failures"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE projection = $1"))
            .bind(P::NAME.as_str())
            .execute(&mut *tx)
            .await?;
    }
    let mut offsets: HashMap<Key, i64> = HashMap::new();
    let (mut after, mut applied, mut last_global) = (0i64, 0i64, 0i64);
    loop {
        let page = event_log::page_after(&mut tx, P::NAME.aggregate_types(), P::NAME.event_types(), after, REPLAY_PAGE)
            .await?;
        let Some(last) = page.last().map(|r| r.global_seq) else {
            break;
        };
        after = last;
        let wanted: Vec<_> = page.into_iter().filter(P::wants).collect();
        for (index, detail) in P::apply_many(&mut tx, &wanted).await? {
            if let Some(record) = wanted.get(index) {
                record_poison::<P>(&mut tx, record, &detail).await?;
            }
        }
        for record in &wanted {
            let key = (record.aggregate_type.clone(), record.aggregate_id.clone());
            // A projection that reads some event types counts the ones it passed
            // over as applied, as a live worker does when it reads them as a gap.
            let previous = offsets.insert(key, record.sequence).unwrap_or(0);
            applied += record.sequence - previous;
            last_global = last_global.max(record.global_seq);
        }
    }
    let offsets: Vec<(Key, i64)> = offsets.into_iter().collect();
    for chunk in offsets.chunks(OFFSETS_PER_STATEMENT) {
        save_offsets::<P>(&mut tx, &chunk.iter().cloned().collect()).await?;
    }
    sqlx::query(
        "INSERT INTO projection_status (projection, applied, last_global_seq, updated_at, rebuilt_at)
         VALUES ($1, $2, $3, now(), now())",
    )
    .bind(P::NAME.as_str())
    .bind(applied)
    .bind(last_global)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(applied as u64)
}
