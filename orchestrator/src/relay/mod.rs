//! The relay: tails the event store in a visibility-safe order (`crate::horizon`) and publishes
//! every event to JetStream, at least once, never skipping one.
//!
//! One relay leads at a time (`crate::lease`); others wait and take over when
//! the leader is killed, frozen or cut off.

mod publish;
mod read;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use ota_domain::bus::BusNames;
use sqlx::{Connection, PgConnection, PgPool};

use crate::lease::{self, Leadership, Lease, LeaseError};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use read::{pending_count, Checkpoint};

/// A term at least this long resets the retry backoff.
const HEALTHY_TERM: Duration = Duration::from_secs(30);

/// Events published per page. Two pages are in flight at most, well under
/// async-nats's 5,000 unacknowledged publishes.
const PAGE_SIZE: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("event store: {0}")]
    Database(#[from] sqlx::Error),
    /// JetStream refused or lost a publish, or the stream could not be set up.
    #[error("publishing to NATS")]
    Publish(#[source] async_nats::Error),
    #[error("stored event cannot be published")]
    Encode(#[source] serde_json::Error),
    #[error("stored event metadata cannot be read")]
    Metadata(#[source] serde_json::Error),
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRole {
    Starting,
    Standby,
    Leader,
}

pub struct Relay {
    pool: PgPool,
    holder: String,
    js: jetstream::Context,
    names: BusNames,
    wake: Arc<Notify>,
    poll: Duration,
}

/// A running relay task; dropping the handle does not stop it, `stop` does.
pub struct RelayHandle {
    task: JoinHandle<()>,
    role: watch::Receiver<RelayRole>,
}

impl RelayHandle {
    pub fn role(&self) -> RelayRole {
        *self.role.borrow()
    }

    /// Waits until this relay leads (for tests and orderly start-up).
    pub async fn until_leader(&mut self) {
        let _ = self.role.wait_for(|r| *r == RelayRole::Leader).await;
    }

    /// Stops the relay as a crash would: its connection, and so its lock, go away.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    pub fn new(pool: PgPool, js: jetstream::Context, names: BusNames, wake: Arc<Notify>) -> Self {
        Self { pool, holder: lease::holder_id(), js, names, wake, poll: Duration::from_millis(100) }
    }

    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    pub fn spawn(self) -> RelayHandle {
        let (tx, rx) = watch::channel(RelayRole::Starting);
        let task = tokio::spawn(async move { self.run(tx).await });
        RelayHandle { task, role: rx }
    }

    async fn run(self, role: watch::Sender<RelayRole>) {
        let mut failures = 0u32;
        loop {
            let began = std::time::Instant::now();
            let outcome = self.lead(&role).await;
            // A term that ran a while was healthy: the next failure starts the backoff afresh.
            if began.elapsed() > HEALTHY_TERM {
                failures = 0;
            }
            match outcome {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = &e as &dyn std::error::Error, failures, "relay interrupted; retrying");
                }
            }
            let _ = role.send(RelayRole::Standby);
            tokio::time::sleep(self.poll * failures.clamp(1, 20)).await;
        }
    }

    /// Competes for leadership, then publishes until an error or a lost lease ends the term.
    async fn lead(&self, role: &watch::Sender<RelayRole>) -> Result<(), RelayError> {
        let _ = role.send(RelayRole::Standby);
        let name = lease::relay_lease(self.names.prefix());
        let leadership = Leadership::acquire(&self.pool, &name, &self.holder, lease::TTL).await?;
        // Its own connection: the lease's renewals never wait behind a page.
        let options = self.pool.connect_options().as_ref().clone().application_name(&format!("ota {name}"));
        let mut conn = PgConnection::connect_with(&options).await?;
        let lease = leadership.lease.clone();
        leadership.lead(self.publish(&mut conn, &lease, role)).await
    }

    async fn publish(
        &self,
        conn: &mut PgConnection,
        lease: &Lease,
        role: &watch::Sender<RelayRole>,
    ) -> Result<(), RelayError> {
        tracing::info!(prefix = self.names.prefix(), epoch = lease.epoch(), "relay leads");
        ota_projections::worker::ensure_events_stream(&self.js, &self.names).await.map_err(RelayError::Publish)?;
        let _ = role.send(RelayRole::Leader);
        // Only the leader writes the checkpoint, so it is read once a term.
        let mut position = read::checkpoint(conn, self.names.prefix()).await?;
        // The page sent but not yet acknowledged. The next page is read and sent while
        // its acknowledgements travel; the checkpoint moves only past acknowledged pages.
        let mut in_flight: Option<(Checkpoint, usize, publish::Sent)> = None;
        // Read again only once the pages up to it are out: a full page leaves more below it.
        let mut known_horizon: Option<Checkpoint> = None;
        loop {
            lease.progressed();
            let bound = match known_horizon {
                Some(bound) => bound,
                None => crate::horizon::safe_position(conn).await?,
            };
            let page = read::page(conn, position, bound, PAGE_SIZE).await?;
            known_horizon = (page.len() == PAGE_SIZE as usize).then_some(bound);
            let sent = match page.last() {
                Some(last) => Some((last.position, page.len(), publish::send_all(&self.js, &self.names, &page).await?)),
                None => None,
            };
            if let Some(previous) = in_flight.take() {
                self.settle(conn, lease, previous).await?;
            }
            if let Some((to, ..)) = &sent {
                position = *to;
            }
            in_flight = sent;
            if page.len() < PAGE_SIZE as usize {
                // Caught up: settle now, so the checkpoint is current while idle.
                if let Some(current) = in_flight.take() {
                    self.settle(conn, lease, current).await?;
                }
                // Woken early by a local commit; the timeout covers other writers.
                let _ = tokio::time::timeout(self.poll, self.wake.notified()).await;
            }
        }
    }

    /// Waits for a sent page's acknowledgements, then advances the checkpoint past it.
    /// A deposed leader's checkpoint write is fenced off: the new leader's stands.
    async fn settle(
        &self,
        conn: &mut PgConnection,
        lease: &Lease,
        (to, count, sent): (Checkpoint, usize, publish::Sent),
    ) -> Result<(), RelayError> {
        sent.acknowledged().await?;
        let mut tx = conn.begin().await?;
        lease.fence(&mut tx).await?;
        read::advance(&mut tx, self.names.prefix(), to, count as i64).await?;
        tx.commit().await?;
        Ok(())
    }
}
