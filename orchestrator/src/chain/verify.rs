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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// Walks the chain and the events side by side, in chain order; stops at the first break.
pub async fn verify(pool: &PgPool) -> Result<Verification, sqlx::Error> {
    let head = super::head(pool).await?;
    let Some(last) = head.as_ref().map(|h| h.position) else {
        return Ok(Verification { ok: true, verified: 0, head, first_broken: None });
    };
    let mut links = sqlx::query("SELECT position, global_seq, link FROM event_chain ORDER BY position").fetch(pool);
    let mut events = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, global_seq,
                recorded_at
         FROM events WHERE (tx_id, global_seq) <= (SELECT tx_id, global_seq FROM event_chain WHERE position = $1)
         ORDER BY tx_id, global_seq",
    )
    .bind(last)
    .fetch(pool);
    let mut previous = GENESIS;
    let mut verified = 0;
    let broken = |position, global_seq, problem| Some(Break { position, global_seq, problem });
    let first_broken = loop {
        let Some(chained) = links.try_next().await? else { break None };
        let (position, global_seq): (i64, i64) = (chained.try_get("position")?, chained.try_get("global_seq")?);
        let stored: Vec<u8> = chained.try_get("link")?;
        let Some(row) = events.try_next().await? else { break broken(position, global_seq, Problem::Missing) };
        let event = event_from_row(&row)?;
        if event.global_seq != global_seq {
            // Either this event was slipped in, or the chained one is gone.
            let still_there: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE global_seq = $1)")
                .bind(global_seq)
                .fetch_one(pool)
                .await?;
            break match still_there {
                true => broken(position, event.global_seq, Problem::Inserted),
                false => broken(position, global_seq, Problem::Missing),
            };
        }
        let recomputed = link(&previous, &event);
        if recomputed.as_slice() != stored.as_slice() {
            break broken(position, global_seq, Problem::Edited);
        }
        previous = recomputed;
        verified += 1;
    };
    Ok(Verification { ok: first_broken.is_none(), verified, head, first_broken })
}
