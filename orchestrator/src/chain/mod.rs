//! The tamper-evident log. A chainer (one leader per database) links every event,
//! in the relay's global order (tx_id, global_seq: never skipping a late commit),
//! to the one before it with SHA-256; `verify` recomputes the chain and names the
//! first event that was edited, inserted or deleted behind the server's back.
//!
//! What a hash chain cannot see: an event forged at the very end before the chainer
//! reaches it looks like any new event. Anchoring the signed head elsewhere bounds
//! what such a forger could rewrite to what came after the last anchor.

mod link;
mod verify;

pub use link::{canonical_bytes, link, StoredEvent, GENESIS};
pub use verify::{verify, Break, Problem, Verification};

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::task::JoinHandle;

/// Events linked per transaction.
const PAGE: i64 = 2000;
/// Advisory lock key of the chainer ("ota-chain").
const LOCK_KEY: i64 = 0x6f74_612d_6368_6169;

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

/// Links the events committed since the last link; returns how many.
pub async fn extend(conn: &mut PgConnection) -> Result<usize, sqlx::Error> {
    let last: Option<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT position, tx_id::text::bigint, global_seq, link FROM event_chain ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let (mut position, tx_id, global_seq, previous) = last.unwrap_or((0, 0, 0, GENESIS.to_vec()));
    let mut previous: [u8; 32] = previous.try_into().unwrap_or(GENESIS);
    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, global_seq,
                recorded_at, tx_id::text::bigint AS tx
         FROM events
         WHERE (tx_id, global_seq) > ($1::text::xid8, $2) AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY tx_id, global_seq LIMIT $3",
    )
    .bind(tx_id.to_string())
    .bind(global_seq)
    .bind(PAGE)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let (mut positions, mut txs, mut seqs, mut links) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        let event = event_from_row(row)?;
        previous = link(&previous, &event);
        position += 1;
        positions.push(position);
        txs.push(row.try_get::<i64, _>("tx")?.to_string());
        seqs.push(event.global_seq);
        links.push(previous.to_vec());
    }
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO event_chain (position, tx_id, global_seq, link)
         SELECT p, t::xid8, g, l FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bytea[]) AS u(p, t, g, l)",
    )
    .bind(&positions)
    .bind(&txs)
    .bind(&seqs)
    .bind(&links)
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
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = lead(&pool).await {
                tracing::warn!(error = %e, "event chain interrupted; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    ChainerHandle { task }
}

async fn lead(pool: &PgPool) -> Result<(), sqlx::Error> {
    // A dedicated connection: the lock lives and dies with it.
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    loop {
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LOCK_KEY).fetch_one(&mut conn).await?;
        if locked {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    loop {
        if (extend(&mut conn).await? as i64) < PAGE {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
