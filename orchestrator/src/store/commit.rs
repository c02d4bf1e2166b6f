//! Commits that know their outcome even when the answer to COMMIT is lost.
//!
//! A connection that breaks after COMMIT was sent leaves the writer blind: the
//! server may have committed or not. Reporting a failure would make the caller
//! retry a command that took effect (a second campaign, a report counted twice);
//! reporting success could claim events that are not there. Every insert of the
//! store therefore returns its transaction's id, and after an ambiguous failure
//! the store asks Postgres, on another connection, what became of it
//! (`pg_xact_status`, made for exactly this).

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

/// How long the outcome of an ambiguous commit is asked for before it is given up
/// as unknown. A COMMIT that never reached the server is rolled back by it within
/// `idle_in_transaction_session_timeout` (5 s), so this outlasts short partitions.
const RESOLVE_WITHIN: Duration = Duration::from_secs(30);
const ASK_EVERY: Duration = Duration::from_millis(200);

/// A transaction's id, as text (`xid8`).
pub(super) struct Xid(pub(super) String);

/// Returns the id of the transaction a statement runs in (which assigns one);
/// the inserts return it, so learning it costs no round trip.
pub(super) const CURRENT_XID: &str = "pg_current_xact_id()::text";

#[derive(Debug, thiserror::Error)]
pub(super) enum CommitError {
    /// The transaction failed before or at COMMIT with an answer from the server
    /// (or no connection at all): nothing of it is stored.
    #[error(transparent)]
    Aborted(sqlx::Error),
    /// The answer to COMMIT was lost, and the server says it rolled back.
    #[error("the connection broke during COMMIT; the database rolled the transaction back: {0}")]
    RolledBack(sqlx::Error),
    /// The answer was lost and the outcome could not be learned in time.
    #[error("the connection broke during COMMIT of transaction {xid} and its outcome stayed unknown for {waited:?}: {cause}")]
    Unknown { xid: String, waited: Duration, cause: sqlx::Error },
}

/// Commits; an ambiguous failure is resolved by asking the server. Without a
/// transaction id nothing was inserted, so either outcome stored nothing.
pub(super) async fn commit(
    pool: &PgPool,
    tx: Transaction<'static, Postgres>,
    xid: Option<Xid>,
) -> Result<(), CommitError> {
    let cause = match tx.commit().await {
        Ok(()) => return Ok(()),
        // The server answered with an error: it did not commit.
        Err(e) if e.as_database_error().is_some() => return Err(CommitError::Aborted(e)),
        Err(e) => e,
    };
    let Some(xid) = xid else { return Err(CommitError::RolledBack(cause)) };
    tracing::warn!(xid = %xid.0, error = %cause, "COMMIT's answer lost; asking the database what became of it");
    let started = std::time::Instant::now();
    while started.elapsed() < RESOLVE_WITHIN {
        let status: Result<Option<String>, _> =
            sqlx::query_scalar("SELECT pg_xact_status($1::xid8)").bind(&xid.0).fetch_one(pool).await;
        match status.as_ref().map(Option::as_deref) {
            Ok(Some("committed")) => {
                tracing::info!(xid = %xid.0, "the ambiguous COMMIT had committed");
                return Ok(());
            }
            Ok(Some("aborted")) => return Err(CommitError::RolledBack(cause)),
            // In progress (the server has not seen the COMMIT or the broken
            // connection yet), or the database is unreachable: ask again.
            _ => tokio::time::sleep(ASK_EVERY).await,
        }
    }
    Err(CommitError::Unknown { xid: xid.0, waited: started.elapsed(), cause })
}
