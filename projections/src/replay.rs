//! Rebuilding a read model from the event store alone.

use sqlx::PgPool;

use crate::apply::{apply_records, lock_projection};
use crate::error::ProjectionError;
use crate::event_log;
use crate::projection::Projection;

const REPLAY_PAGE: i64 = 1000;

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
    let mut after = 0i64;
    let mut applied = 0u64;
    loop {
        let page = event_log::page_after(&mut tx, P::NAME.aggregate_types(), after, REPLAY_PAGE).await?;
        let Some(last) = page.last().map(|r| r.global_seq) else {
            break;
        };
        applied += apply_records::<P>(&mut tx, &page).await?.applied;
        after = last;
    }
    sqlx::query(
        "INSERT INTO projection_status (projection, rebuilt_at) VALUES ($1, now())
         ON CONFLICT (projection) DO UPDATE SET rebuilt_at = now()",
    )
    .bind(P::NAME.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(applied)
}
