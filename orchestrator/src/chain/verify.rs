//! Recomputing the chain from the events as they are stored now.

use futures::TryStreamExt;
use serde::Serialize;
use sqlx::{PgPool, Row};

use super::{event_from_row, link, Head, GENESIS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Problem {
    /// The event at this position no longer hashes to its link.
    Edited,
    /// The chain has an event the store no longer has.
    Missing,
    /// The store has an event, before the chain's head, that the chain never linked.
    Inserted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Break {
    /// Position in the chain (1 = the first event ever).
    pub position: i64,
    /// The event's global sequence number.
    pub global_seq: i64,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verification {
    pub ok: bool,
    /// Links recomputed and found intact.
    pub verified: i64,
    pub head: Option<Head>,
    pub first_broken: Option<Break>,
}

/// Walks the chain in its order, each link beside the event it names; stops at the first break.
pub async fn verify(pool: &PgPool) -> Result<Verification, sqlx::Error> {
    let head = super::head(pool).await?;
    let Some(last) = head.as_ref().map(|h| h.position) else {
        return Ok(Verification { ok: true, verified: 0, head, first_broken: None });
    };
    let inserted = first_unlinked(pool, last).await?;
    let mut walk = sqlx::query(
        "SELECT c.position, c.global_seq AS linked_seq, c.link, e.aggregate_type, e.aggregate_id, e.sequence,
                e.event_type, e.event_version, e.payload, e.metadata, e.global_seq, e.recorded_at
         FROM event_chain c LEFT JOIN events e ON e.global_seq = c.global_seq
         WHERE c.position <= $1 ORDER BY c.position",
    )
    // Up to the head read above: the chainer goes on meanwhile, and a report
    // must not verify more links than the head it names.
    .bind(last)
    .fetch(pool);
    let mut previous = GENESIS;
    let mut verified = 0;
    let broken = |position, global_seq, problem| Some(Break { position, global_seq, problem });
    let first_broken = loop {
        let Some(row) = walk.try_next().await? else { break inserted };
        let (position, global_seq): (i64, i64) = (row.try_get("position")?, row.try_get("linked_seq")?);
        if let Some(inserted) = inserted.filter(|i| i.position <= position) {
            break Some(inserted);
        }
        if row.try_get::<Option<i64>, _>("global_seq")?.is_none() {
            break broken(position, global_seq, Problem::Missing);
        }
        let stored: Vec<u8> = row.try_get("link")?;
        let recomputed = link(&previous, &event_from_row(&row)?);
        if recomputed.as_slice() != stored.as_slice() {
            break broken(position, global_seq, Problem::Edited);
        }
        previous = recomputed;
        verified += 1;
    };
    Ok(Verification { ok: first_broken.is_none(), verified, head, first_broken })
}

/// An event below the chainer's cursor that no link names: slipped in behind its back.
/// Its break sits where it would have been linked, before the next linked position.
async fn first_unlinked(pool: &PgPool, last: i64) -> Result<Option<Break>, sqlx::Error> {
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT e.global_seq,
                (SELECT min(c.position) FROM event_chain c WHERE c.global_seq > e.global_seq)
         FROM events e
         WHERE e.global_seq <= (SELECT global_seq FROM event_chain_cursor)
           AND NOT EXISTS (SELECT 1 FROM event_chain c WHERE c.global_seq = e.global_seq)
         ORDER BY e.global_seq LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(global_seq, before)| Break {
        position: before.unwrap_or(last + 1),
        global_seq,
        problem: Problem::Inserted,
    }))
}
