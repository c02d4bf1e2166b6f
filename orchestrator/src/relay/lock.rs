//! Leadership by a session-level advisory lock: held as long as the connection lives.

use sqlx::PgConnection;

pub async fn try_acquire(conn: &mut PgConnection, prefix: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended('ota-relay:' || $1, 0))")
        .bind(prefix)
        .fetch_one(conn)
        .await
}
