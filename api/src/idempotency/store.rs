//! The `idempotency_keys` table: claiming a key, holding its lease, storing the
//! outcome or giving the key back, and sweeping expired rows.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

/// Who asked what: the columns kept beside the hashed scope, for people reading the table.
pub struct Scope<'a> {
    pub id: [u8; 32],
    pub caller: &'a str,
    pub method: &'a str,
    pub path: &'a str,
}

/// A stored answer; `body` as stored (sealed).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a key already holds.
#[derive(Debug, Clone)]
pub struct Record {
    pub fingerprint: Option<Vec<u8>>,
    /// `None` while the first request is still in flight.
    pub outcome: Option<Outcome>,
}

pub enum Claim {
    /// The key is ours to execute under; `token` proves it when settling.
    Claimed {
        token: Uuid,
    },
    Taken(Record),
}

fn interval(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Claims the key, or returns what it holds. A row whose retention ended, or whose
/// in-flight lease lapsed (its server died mid-request), is taken over.
pub async fn claim(
    pool: &PgPool,
    scope: &Scope<'_>,
    fingerprint: Option<&[u8]>,
    lease: Duration,
    retention: Duration,
) -> Result<Claim, sqlx::Error> {
    // A row can vanish between the two statements (its request gave the key back):
    // then the next round claims it. Three rounds only race with a client that keeps
    // reusing one key as fast as it fails.
    for _ in 0..3 {
        let token = Uuid::new_v4();
        let claimed: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys AS k
                 (id, caller, method, path, fingerprint, lock_token, locked_until, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6,
                     now() + make_interval(secs => $7), now() + make_interval(secs => $8))
             ON CONFLICT (id) DO UPDATE SET
                 fingerprint = EXCLUDED.fingerprint, lock_token = EXCLUDED.lock_token,
                 locked_until = EXCLUDED.locked_until, expires_at = EXCLUDED.expires_at,
                 status = NULL, headers = NULL, body = NULL, created_at = now()
             WHERE k.expires_at < now() OR (k.status IS NULL AND k.locked_until < now())
             RETURNING lock_token",
        )
        .bind(&scope.id[..])
        .bind(scope.caller)
        .bind(scope.method)
        .bind(scope.path)
        .bind(fingerprint)
        .bind(token)
        .bind(interval(lease))
        .bind(interval(retention))
        .fetch_optional(pool)
        .await?;
        if claimed == Some(token) {
            return Ok(Claim::Claimed { token });
        }
        if let Some(record) = load(pool, &scope.id).await? {
            return Ok(Claim::Taken(record));
        }
    }
    Err(sqlx::Error::Protocol("idempotency key kept changing hands while being claimed".to_owned()))
}

type Row = (Option<Vec<u8>>, Option<i16>, Option<sqlx::types::Json<Vec<(String, String)>>>, Option<Vec<u8>>);

async fn load(pool: &PgPool, id: &[u8; 32]) -> Result<Option<Record>, sqlx::Error> {
    let row: Option<Row> =
        sqlx::query_as("SELECT fingerprint, status, headers, body FROM idempotency_keys WHERE id = $1")
            .bind(&id[..])
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(fingerprint, status, headers, body)| Record {
        fingerprint,
        outcome: status.and_then(|s| u16::try_from(s).ok()).map(|status| Outcome {
            status,
            headers: headers.map(|h| h.0).unwrap_or_default(),
            body: body.unwrap_or_default(),
        }),
    }))
}

/// Keeps the claim alive while its request runs (an upload may take minutes).
pub async fn extend(pool: &PgPool, id: &[u8; 32], token: Uuid, lease: Duration) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND lock_token = $2",
    )
    .bind(&id[..])
    .bind(token)
    .bind(interval(lease))
    .execute(pool)
    .await?;
    Ok(())
}

/// Stores the answer under the key, if the claim is still ours.
pub async fn complete(
    pool: &PgPool,
    id: &[u8; 32],
    token: Uuid,
    fingerprint: &[u8],
    outcome: &Outcome,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys
         SET fingerprint = $3, status = $4, headers = $5, body = $6, lock_token = NULL, locked_until = NULL
         WHERE id = $1 AND lock_token = $2",
    )
    .bind(&id[..])
    .bind(token)
    .bind(fingerprint)
    .bind(i16::try_from(outcome.status).unwrap_or(i16::MAX))
    .bind(sqlx::types::Json(&outcome.headers))
    .bind(&outcome.body)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives the key back: the outcome is not one to replay (a 5xx, a timeout).
pub async fn release(pool: &PgPool, id: &[u8; 32], token: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM idempotency_keys WHERE id = $1 AND lock_token = $2")
        .bind(&id[..])
        .bind(token)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes expired rows in batches, so one sweep never holds a long lock; returns how many.
pub async fn sweep(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM idempotency_keys WHERE id IN
                 (SELECT id FROM idempotency_keys WHERE expires_at < now() LIMIT 1000)",
        )
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < 1000 {
            return Ok(total);
        }
    }
}
