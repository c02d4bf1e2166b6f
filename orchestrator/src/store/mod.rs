//! Executes commands against aggregates stored by postgres-es.
//!
//! cqrs-es has no retry: a concurrent append to the same aggregate fails with
//! `AggregateConflict`. We reload and decide again (bounded, jittered), so a
//! conflicting command is neither lost nor doubled.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateError, EventEnvelope, EventStore};
use ota_domain::campaign::Campaign;
use ota_domain::device::Device;
use ota_domain::device_update::DeviceUpdate;
use ota_domain::firmware::Firmware;
use ota_domain::{CampaignId, CommandMeta, Decide, DeviceId, FirmwareId};
use rand::Rng;
use sqlx::PgPool;
use tokio::sync::Notify;

mod batch;
mod cache;
mod chained;
mod commit;
mod rows;
mod tally;
mod versioned;

pub use batch::BatchItem;
pub use chained::{Chained, ChainedBatcher, FollowUp};
pub use tally::{build_once as build_wave_tallies, campaign_tallies, rebuild_all as rebuild_wave_tallies, TallyRow};
use versioned::VersionedRepository;

/// How many times a command is decided again after losing a race.
const MAX_ATTEMPTS: u32 = 12;

/// An aggregate the store knows how to persist.
pub trait Stored: Decide + Clone + 'static
where
    Self::Command: Clone + Send,
{
    /// The id its streams are named by; written as the event rows' `aggregate_id`.
    type Id: std::fmt::Display + Sync + ?Sized;
    /// Snapshot every n events, for streams that grow long.
    const SNAPSHOT_EVERY: Option<usize> = None;
    /// The shape of the aggregate's state in its snapshots; a snapshot of another
    /// version is dropped and the state rebuilt from events.
    const SNAPSHOT_VERSION: u32 = 1;
    /// Where this state counts in the gates' wave counters, which the store
    /// keeps in the events' own transaction (`tally`); `None` for aggregates
    /// that count nowhere. Aggregates with snapshots may not count.
    fn tally_slot(&self) -> Option<ota_domain::device_update::TallySlot> {
        None
    }
}

impl Stored for Firmware {
    type Id = FirmwareId;
}
impl Stored for Device {
    type Id = DeviceId;
}
impl Stored for DeviceUpdate {
    type Id = DeviceId;
    fn tally_slot(&self) -> Option<ota_domain::device_update::TallySlot> {
        DeviceUpdate::tally_slot(self)
    }
}
impl Stored for ota_domain::api_key::ApiKey {
    type Id = uuid::Uuid;
}
impl Stored for Campaign {
    type Id = CampaignId;
    const SNAPSHOT_EVERY: Option<usize> = Some(50);
    const SNAPSHOT_VERSION: u32 = Campaign::SNAPSHOT_VERSION;
}

/// What made the event store unavailable: the database's error, or cqrs-es's.
/// Shared, since one failed group commit fails every command in it.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A failure the store states itself, with no underlying error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreFault(pub &'static str);

#[derive(Debug, thiserror::Error)]
pub enum StoreError<E: std::error::Error + 'static> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(E),
    /// Still conflicting after every retry: the aggregate is hot.
    #[error("aggregate {aggregate_id} kept changing under {attempts} attempts")]
    Contended { aggregate_id: String, attempts: u32 },
    /// The database could not be reached or failed.
    #[error("event store unavailable")]
    Unavailable(#[source] Cause),
    /// Stored events could not be read back.
    #[error("stored events of {aggregate_id} cannot be decoded: {detail}")]
    Corrupt { aggregate_id: String, detail: String },
}

/// The outcome of a command: the state after it and the events it stored.
#[derive(Debug)]
pub struct Committed<A: Stored>
where
    A::Command: Clone + Send,
{
    pub state: A,
    /// Sequence of the aggregate's last event after the command.
    pub version: usize,
    pub events: Vec<EventEnvelope<A>>,
}

impl<A: Stored> Committed<A>
where
    A::Command: Clone + Send,
{
    /// True if the command changed nothing (an idempotent repeat).
    pub fn unchanged(&self) -> bool {
        self.events.is_empty()
    }
}

/// The command side's gateway to the event store.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    committed: Arc<Notify>,
    /// Hands each transaction the next counter slot (`tally::SLOTS`).
    tally_slot: Arc<std::sync::atomic::AtomicUsize>,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, committed: Arc::new(Notify::new()), tally_slot: Arc::default() }
    }

    /// The counter slot for the next transaction.
    fn next_tally_slot(&self) -> usize {
        self.tally_slot.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % tally::SLOTS
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Signalled after every commit, so the relay need not wait for its next poll.
    pub fn commit_signal(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    fn event_store<A: Stored>(&self) -> PersistedEventStore<VersionedRepository, A>
    where
        A::Command: Clone + Send,
    {
        let repo = VersionedRepository::new(self.pool.clone(), A::SNAPSHOT_VERSION);
        match A::SNAPSHOT_EVERY {
            Some(n) => PersistedEventStore::new_snapshot_store(repo, n),
            None => PersistedEventStore::new_event_store(repo),
        }
    }

    /// Loads the current state of an aggregate; a never-written id yields the default state.
    pub async fn load<A: Stored>(&self, id: &A::Id) -> Result<(A, usize), StoreError<A::Error>>
    where
        A::Command: Clone + Send,
    {
        self.load_stream(&id.to_string()).await
    }

    /// Decides and stores a command, retrying on concurrent appends.
    pub async fn execute<A: Stored>(
        &self,
        id: &A::Id,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Committed<A>, StoreError<A::Error>>
    where
        A::Command: Clone + Send,
    {
        self.execute_stream(&id.to_string(), command, meta).await
    }

    /// `load` by the stream's `aggregate_id` text, for the batch paths that carry ids as text.
    pub(crate) async fn load_stream<A: Stored>(&self, id: &str) -> Result<(A, usize), StoreError<A::Error>>
    where
        A::Command: Clone + Send,
    {
        let ctx = self.event_store::<A>().load_aggregate(id).await.map_err(|e| classify(id, e))?;
        Ok((ctx.aggregate, ctx.current_sequence))
    }

    /// `execute` by the stream's `aggregate_id` text.
    pub(crate) async fn execute_stream<A: Stored>(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Committed<A>, StoreError<A::Error>>
    where
        A::Command: Clone + Send,
    {
        let outcome = self.decide_and_append(id, command, meta).await;
        count_outcome(&outcome);
        outcome
    }

    async fn decide_and_append<A: Stored>(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Committed<A>, StoreError<A::Error>>
    where
        A::Command: Clone + Send,
    {
        if A::SNAPSHOT_EVERY.is_none() {
            return self.append_one(id, command, meta).await;
        }
        let store = self.event_store::<A>();
        for attempt in 1..=MAX_ATTEMPTS {
            let ctx = store.load_aggregate(id).await.map_err(|e| classify(id, e))?;
            let events = ctx.aggregate.decide(command.clone()).map_err(StoreError::Rejected)?;
            if events.is_empty() {
                return Ok(Committed { version: ctx.current_sequence, state: ctx.aggregate, events: vec![] });
            }
            let mut state = ctx.aggregate.clone();
            for event in &events {
                state.apply(event.clone());
            }
            let version = ctx.current_sequence + events.len();
            match store.commit(events, ctx, meta.to_map()).await {
                Ok(events) => {
                    self.committed.notify_one();
                    return Ok(Committed { state, version, events });
                }
                Err(AggregateError::AggregateConflict) => {
                    metrics::counter!("ota_command_conflicts_total", "aggregate" => A::TYPE).increment(1);
                    tracing::debug!(aggregate = A::TYPE, id, attempt, "append conflict, deciding again");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(classify(id, e)),
            }
        }
        Err(StoreError::Contended { aggregate_id: id.to_owned(), attempts: MAX_ATTEMPTS })
    }
}

/// Counts a decided command, and the events it appended, for `/metrics`.
pub(crate) fn count_outcome<A: Stored>(outcome: &Result<Committed<A>, StoreError<A::Error>>)
where
    A::Command: Clone + Send,
{
    let label = match outcome {
        Ok(committed) if committed.events.is_empty() => "unchanged",
        Ok(_) => "stored",
        Err(StoreError::Rejected(_)) => "rejected",
        Err(StoreError::Contended { .. }) => "contended",
        Err(StoreError::Unavailable(_)) => "unavailable",
        Err(StoreError::Corrupt { .. }) => "corrupt",
    };
    metrics::counter!("ota_commands_total", "aggregate" => A::TYPE, "outcome" => label).increment(1);
    if let Ok(committed) = outcome {
        let appended = committed.events.len() as u64;
        if appended > 0 {
            metrics::counter!("ota_events_appended_total", "aggregate" => A::TYPE).increment(appended);
        }
    }
}

impl<E: std::error::Error + 'static> StoreError<E> {
    /// The database's (or cqrs-es's) error as the store's cause.
    pub fn unavailable(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable(Arc::new(cause))
    }

    /// The error without the aggregate's refusal type, for failures that are never
    /// a refusal (a read, a batch that could not be stored).
    fn into_cause(self) -> Cause {
        match self {
            StoreError::Unavailable(cause) => cause,
            StoreError::Rejected(_) => Arc::new(StoreFault("a read was refused")),
            StoreError::Contended { aggregate_id, attempts } => {
                Arc::new(StoreError::<std::convert::Infallible>::Contended { aggregate_id, attempts })
            }
            StoreError::Corrupt { aggregate_id, detail } => {
                Arc::new(StoreError::<std::convert::Infallible>::Corrupt { aggregate_id, detail })
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let ceiling_ms = (1u64 << attempt.min(6)).min(50);
    Duration::from_micros(rand::thread_rng().gen_range(100..=ceiling_ms * 1000))
}

fn classify<E: std::error::Error + 'static>(id: &str, error: AggregateError<E>) -> StoreError<E> {
    match error {
        AggregateError::UserError(e) => StoreError::Rejected(e),
        AggregateError::AggregateConflict => StoreError::Contended { aggregate_id: id.to_owned(), attempts: 1 },
        AggregateError::DeserializationError(e) => {
            StoreError::Corrupt { aggregate_id: id.to_owned(), detail: e.to_string() }
        }
        AggregateError::DatabaseConnectionError(e) | AggregateError::UnexpectedError(e) => {
            StoreError::Unavailable(Cause::from(e))
        }
    }
}
