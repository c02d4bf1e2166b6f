//! Leadership of a singleton worker by lease, with a fencing epoch.
//!
//! A session advisory lock lives as long as its connection: a frozen process
//! (SIGSTOP, a stuck VM) or a host that vanished without closing its socket kept
//! it for as long as the OS took to notice (hours), and nobody else led. A lease
//! expires unless renewed (database clock, so instances' clocks do not matter),
//! and is free at once when its holder's database session is gone (a killed
//! process). Each new holder gets the next epoch; leader writes check it in their
//! own transaction (`fence`), so a deposed leader that wakes up writes nothing.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};

/// How long a lease holds without renewal: a frozen leader is replaced within
/// this (plus one standby poll); a killed one at once.
pub const TTL: Duration = Duration::from_secs(6);
/// Renewals per TTL: two may fail (a slow database) before the lease runs out.
const RENEWALS_PER_TTL: u32 = 3;
/// How often a standby tries to take the lease.
const STANDBY_POLL: Duration = Duration::from_millis(500);

/// The relay's lease: one per database and NATS prefix.
pub fn relay_lease(prefix: &str) -> String {
    format!("relay:{prefix}")
}

/// The rollout process manager's lease: one per database and NATS prefix.
pub fn rollout_lease(prefix: &str) -> String {
    format!("rollout:{prefix}")
}

/// The chainer's lease: the chain is one per database.
pub const CHAIN_LEASE: &str = "chain";

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("lease {name} lost: another instance leads")]
    Lost { name: String },
}

/// This process as a lease holder: readable in health reports, unique per start.
pub fn holder_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned());
    format!("{host}/{}/{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// A lease this process holds (or held: every write checks).
#[derive(Debug, Clone)]
pub struct Lease {
    name: String,
    holder: String,
    epoch: i64,
    /// Milliseconds since `started` at the leader's last progress.
    progress: Arc<AtomicI64>,
    started: Instant,
}

impl Lease {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The leader did its work (even if there was none): health tells this from a stuck leader.
    pub fn progressed(&self) {
        self.progress.store(self.started.elapsed().as_millis() as i64, Ordering::Relaxed);
    }

    fn progress_age(&self) -> Duration {
        let at = Duration::from_millis(self.progress.load(Ordering::Relaxed).max(0) as u64);
        self.started.elapsed().saturating_sub(at)
    }

    /// Inside a leader's write transaction: still ours? The row lock held until
    /// commit makes a takeover wait for this transaction, so it cannot interleave.
    pub async fn fence(&self, tx: &mut PgConnection) -> Result<(), LeaseError> {
        let current: Option<(String, i64)> =
            sqlx::query_as("SELECT holder, epoch FROM leases WHERE name = $1 FOR SHARE")
                .bind(&self.name)
                .fetch_optional(&mut *tx)
                .await?;
        match current {
            Some((holder, epoch)) if holder == self.holder && epoch == self.epoch => Ok(()),
            _ => Err(LeaseError::Lost { name: self.name.clone() }),
        }
    }
}

/// A dedicated connection that takes and keeps one lease.
pub struct Leadership {
    conn: PgConnection,
    pub lease: Lease,
    ttl: Duration,
}

impl Leadership {
    /// Waits until this process holds lease `name`.
    pub async fn acquire(pool: &PgPool, name: &str, holder: &str, ttl: Duration) -> Result<Self, LeaseError> {
        let options = pool.connect_options().as_ref().clone().application_name(&format!("ota lease {name}"));
        let mut conn = PgConnection::connect_with(&options).await?;
        loop {
            if let Some(epoch) = try_take(&mut conn, name, holder, ttl).await? {
                let started = Instant::now();
                let lease = Lease {
                    name: name.to_owned(),
                    holder: holder.to_owned(),
                    epoch,
                    progress: Arc::default(),
                    started,
                };
                tracing::info!(lease = name, epoch, "leads");
                return Ok(Self { conn, lease, ttl });
            }
            tokio::time::sleep(STANDBY_POLL).await;
        }
    }

    /// Runs the leader's `work` while the lease holds, and stops it as soon as the
    /// lease is lost (by then another instance may lead). A term whose work ends
    /// cleanly gives the lease up, so a standby takes over at its next poll.
    pub async fn lead<T, E: From<LeaseError>>(mut self, work: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let term = tokio::select! {
            lost = self.keep() => Err(lost.into()),
            ended = work => ended,
        };
        if term.is_ok() {
            self.release().await;
        }
        term
    }

    /// Renews until the lease is lost or the database stops answering in time;
    /// never returns otherwise.
    async fn keep(&mut self) -> LeaseError {
        let every = self.ttl / RENEWALS_PER_TTL;
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let renewal = tokio::time::timeout(every, self.renew()).await;
            match renewal {
                Ok(Ok(true)) => last_renewed = Instant::now(),
                Ok(Ok(false)) => return LeaseError::Lost { name: self.lease.name.clone() },
                Ok(Err(e)) if last_renewed.elapsed() + every >= self.ttl => return LeaseError::Database(e),
                Ok(Err(e)) => tracing::warn!(lease = self.lease.name, error = %e, "lease renewal failed; retrying"),
                Err(_) if last_renewed.elapsed() + every >= self.ttl => {
                    return LeaseError::Lost { name: self.lease.name.clone() };
                }
                Err(_) => tracing::warn!(lease = self.lease.name, "lease renewal slow; retrying"),
            }
        }
    }

    async fn renew(&mut self) -> Result<bool, sqlx::Error> {
        let renewed = sqlx::query(
            "UPDATE leases SET expires_at = clock_timestamp() + make_interval(secs => $4),
                               progress_at = clock_timestamp() - make_interval(secs => $5)
             WHERE name = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(&self.lease.name)
        .bind(&self.lease.holder)
        .bind(self.lease.epoch)
        .bind(self.ttl.as_secs_f64())
        .bind(self.lease.progress_age().as_secs_f64())
        .execute(&mut self.conn)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Gives the lease up (a graceful stop): a standby takes over at its next poll.
    async fn release(mut self) {
        let released = sqlx::query(
            "UPDATE leases SET expires_at = clock_timestamp() WHERE name = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(&self.lease.name)
        .bind(&self.lease.holder)
        .bind(self.lease.epoch)
        .execute(&mut self.conn)
        .await;
        if let Err(e) = released {
            tracing::warn!(lease = self.lease.name, error = %e, "lease not released; it expires by itself");
        }
        let _ = self.conn.close().await;
    }
}

/// Takes the lease if it is free, expired, or its holder's session is gone;
/// returns the new epoch.
async fn try_take(
    conn: &mut PgConnection,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<i64>, sqlx::Error> {
    // A session whose start time this role may not see counts as alive.
    sqlx::query_scalar(
        "INSERT INTO leases AS l (name, holder, epoch, holder_pid, holder_started, acquired_at, expires_at, progress_at)
         SELECT $1, $2, 1, a.pid, a.backend_start, clock_timestamp(),
                clock_timestamp() + make_interval(secs => $3), clock_timestamp()
         FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
         ON CONFLICT (name) DO UPDATE
         SET holder = EXCLUDED.holder, epoch = l.epoch + 1, holder_pid = EXCLUDED.holder_pid,
             holder_started = EXCLUDED.holder_started, acquired_at = EXCLUDED.acquired_at,
             expires_at = EXCLUDED.expires_at, progress_at = EXCLUDED.progress_at
         WHERE l.expires_at < clock_timestamp()
            OR NOT EXISTS (SELECT 1 FROM pg_stat_activity s WHERE s.pid = l.holder_pid
                           AND (s.backend_start = l.holder_started OR s.backend_start IS NULL))
         RETURNING epoch",
    )
    .bind(name)
    .bind(holder)
    .bind(ttl.as_secs_f64())
    .fetch_optional(conn)
    .await
}

/// A lease as health reports show it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseStatus {
    pub name: String,
    pub holder: String,
    pub epoch: i64,
    /// Seconds until it expires unless renewed (negative: expired, nobody leads).
    pub expires_in_secs: f64,
    /// Seconds since the leader last did its work.
    pub progress_age_secs: f64,
}

pub async fn statuses(pool: &PgPool) -> Result<Vec<LeaseStatus>, sqlx::Error> {
    let rows: Vec<(String, String, i64, f64, f64)> = sqlx::query_as(
        "SELECT name, holder, epoch,
                extract(epoch FROM expires_at - clock_timestamp())::float8,
                extract(epoch FROM clock_timestamp() - progress_at)::float8
         FROM leases ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, holder, epoch, expires_in_secs, progress_age_secs)| LeaseStatus {
            name,
            holder,
            epoch,
            expires_in_secs,
            progress_age_secs,
        })
        .collect())
}
