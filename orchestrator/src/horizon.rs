//! How far the event store can be read in `global_seq` order without skipping
//! a late commit, whatever else runs on the Postgres cluster.
//!
//! Positions are handed out at INSERT while transactions commit in any order, so
//! `global_seq > cursor` alone can pass over an event whose transaction commits
//! late. Every transaction that inserts events holds a shared advisory lock from
//! before its first position until it ends (a trigger, migration 0015). A reader
//! notes the highest visible position H, then the writers holding that lock; once
//! those have ended, every position up to H is committed or rolled back for good.
//! Only this database's event writers are waited for: transactions of other
//! databases, replays and idle sessions that wrote no events cannot stall it.

use std::time::{Duration, Instant};

use sqlx::PgConnection;

/// The advisory lock key event writers hold ("ota-wrtr"), as in migration 0015.
const WRITERS_KEY: i64 = 0x6f74_612d_7772_7472;

/// Waits this long before naming the writers it waits for in the log.
const REPORT_AFTER: Duration = Duration::from_secs(5);

/// Announced event writers of this database; `pg_locks` shows a bigint advisory
/// key as its high and low halves with objsubid 1.
const WRITERS: &str = "locktype = 'advisory' AND objsubid = 1 AND granted
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
     AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid";

/// The highest position below which nothing can still appear. Waits for the event
/// writers that were running when that position became visible (usually a commit
/// or two: milliseconds), however long they take.
pub async fn safe_position(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    // One statement, one snapshot: the maximum is read before the lock table.
    let (seen, writers): (i64, Vec<String>) = sqlx::query_as(&format!(
        "SELECT (SELECT COALESCE(max(global_seq), 0) FROM events),
                ARRAY(SELECT virtualtransaction FROM pg_locks WHERE {WRITERS})"
    ))
    .bind(WRITERS_KEY)
    .fetch_one(&mut *conn)
    .await?;
    if !writers.is_empty() {
        wait_for(conn, &writers).await?;
    }
    Ok(seen)
}

async fn wait_for(conn: &mut PgConnection, writers: &[String]) -> Result<(), sqlx::Error> {
    let began = Instant::now();
    let mut pause = Duration::from_millis(1);
    let mut reported = false;
    loop {
        let running: Vec<Option<i32>> =
            sqlx::query_scalar(&format!("SELECT pid FROM pg_locks WHERE {WRITERS} AND virtualtransaction = ANY($2)"))
                .bind(WRITERS_KEY)
                .bind(writers)
                .fetch_all(&mut *conn)
                .await?;
        if running.is_empty() {
            return Ok(());
        }
        if !reported && began.elapsed() > REPORT_AFTER {
            reported = true;
            tracing::warn!(
                pids = ?running,
                waited_s = began.elapsed().as_secs(),
                "events written by open transactions hold back publishing until they end"
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
