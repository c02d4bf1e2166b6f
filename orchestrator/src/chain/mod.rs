//! The tamper-evident log. A chainer (one leader per database) links every event,
//! in the relay's global order (global_seq, never skipping a late commit),
//! to the one before it with SHA-256; `verify` recomputes the chain and names the
//! first event that was edited, inserted or deleted behind the server's back.
//!
//! What a hash chain cannot see: an event forged at the very end before the chainer
//! reaches it looks like any new event, and a superuser can recompute every link
//! after an edit or cut the tail off. Signed heads kept elsewhere (`anchor`:
//! checkpoints, `/audit/head`) bound what such a forger could rewrite to what
//! came after the last anchor.

mod anchor;
mod link;
mod verify;

pub use anchor::{
    check_signed_head, head_message, key_id, sign, verify_anchor, Anchor, AnchorCheck, AnchorProblem, ForgedAnchor,
    SignedHead,
};
pub use link::{canonical_bytes, link, StoredEvent, GENESIS};
pub use verify::{verify, Break, Problem, Verification};

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::task::JoinHandle;

use crate::lease::{self, Leadership, Lease, LeaseError};

/// Events linked per transaction.
const PAGE: i64 = 2000;

/// The newest link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Head {
    pub position: i64,
    pub global_seq: i64,
    /// Hex SHA-256.
    pub link: String,
}

pub(crate) fn event_from_row(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        global_seq: row.try_get("global_seq")?,
        recorded_at: row.try_get::<DateTime<Utc>, _>("recorded_at")?,
    })
}

pub async fn head(pool: &PgPool) -> Result<Option<Head>, sqlx::Error> {
    let row: Option<(i64, i64, Vec<u8>)> =
        sqlx::query_as("SELECT position, global_seq, link FROM event_chain ORDER BY position DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(position, global_seq, link)| Head { position, global_seq, link: hex::encode(link) }))
}

/// Links the events committed since the last link, in position order; returns how many.
pub async fn extend(conn: &mut PgConnection, lease: &Lease) -> Result<usize, LeaseError> {
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT position, link FROM event_chain ORDER BY position DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (mut position, previous) = last.unwrap_or((0, GENESIS.to_vec()));
    let mut previous: [u8; 32] = previous.try_into().unwrap_or(GENESIS);
    let cursor: i64 = sqlx::query_scalar("SELECT global_seq FROM event_chain_cursor").fetch_one(&mut *conn).await?;
    let safe = crate::horizon::safe_position(conn).await?;
    // NOT EXISTS: links made before migration 0015 followed another order, so a few
    // events above the cursor may be linked already.
    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, global_seq,
                recorded_at
         FROM events e
         WHERE global_seq > $1 AND global_seq <= $2
           AND NOT EXISTS (SELECT 1 FROM event_chain c WHERE c.global_seq = e.global_seq)
         ORDER BY global_seq LIMIT $3",
    )
    .bind(cursor)
    .bind(safe)
    .bind(PAGE)
    .fetch_all(&mut *conn)
    .await?;
    // A short page read everything up to `safe`, rolled-back positions included.
    let reached = match rows.last() {
        Some(last) if rows.len() as i64 == PAGE => last.try_get::<i64, _>("global_seq")?,
        _ => safe,
    };
    if rows.is_empty() && reached <= cursor {
        return Ok(0);
    }
    let (mut positions, mut seqs, mut links) = (Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        let event = event_from_row(row)?;
        previous = link(&previous, &event);
        position += 1;
        positions.push(position);
        seqs.push(event.global_seq);
        links.push(previous.to_vec());
    }
    let mut tx = conn.begin().await?;
    lease.fence(&mut tx).await?;
    sqlx::query(
        "INSERT INTO event_chain (position, global_seq, link)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bytea[])",
    )
    .bind(&positions)
    .bind(&seqs)
    .bind(&links)
    .execute(&mut *tx)
    .await?;
    // Past rolled-back positions too, so the next page starts above them.
    sqlx::query("UPDATE event_chain_cursor SET global_seq = greatest(global_seq, $1)")
        .bind(reached)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows.len())
}

pub struct ChainerHandle {
    task: JoinHandle<()>,
}

impl Drop for ChainerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps the chain up with the event store: one leader per database, the others wait.
pub fn spawn(pool: PgPool) -> ChainerHandle {
    let holder = lease::holder_id();
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = lead(&pool, &holder).await {
                tracing::warn!(error = %e, "event chain interrupted; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    ChainerHandle { task }
}

async fn lead(pool: &PgPool, holder: &str) -> Result<(), LeaseError> {
    let leadership = Leadership::acquire(pool, lease::CHAIN_LEASE, holder, lease::TTL).await?;
    let lease = leadership.lease.clone();
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    let work = async {
        loop {
            lease.progressed();
            if (extend(&mut conn, &lease).await? as i64) < PAGE {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    leadership.lead(work).await
}
