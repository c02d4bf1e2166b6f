//! Group commit for concurrent callers: commands arriving together (device
//! reports from many devices, say) are decided and stored in one transaction,
//! and each caller gets its own result once that transaction has committed.
//!
//! Commands are split over a few committers by aggregate id, so one batch can
//! be deciding while another waits for its commit to reach the disk, and the
//! commands on one aggregate still run in the order they arrived.

use std::hash::BuildHasher;
use std::sync::Arc;

use ota_domain::CommandMeta;
use tokio::sync::{mpsc, oneshot};

use super::cache::StateCache;
use super::{Committed, Store, StoreError, Stored};

/// Commands per transaction at most.
const MAX_BATCH: usize = 1000;
/// Committers per aggregate type, each with its own transaction in flight.
const SHARDS: usize = 4;
/// Aggregate states remembered per aggregate type (over all shards).
const CACHED_STATES: usize = 200_000;

type Reply<A> = oneshot::Sender<Result<Committed<A>, StoreError<<A as cqrs_es::Aggregate>::Error>>>;

struct Job<A: Stored>
where
    A::Command: Clone + Send,
{
    id: String,
    command: A::Command,
    meta: CommandMeta,
    reply: Reply<A>,
}

/// A handle to the background group committers for one aggregate type.
pub struct Batcher<A: Stored>
where
    A::Command: Clone + Send,
{
    shards: Arc<[mpsc::Sender<Job<A>>]>,
    route: std::collections::hash_map::RandomState,
}

impl<A: Stored> Clone for Batcher<A>
where
    A::Command: Clone + Send,
{
    fn clone(&self) -> Self {
        Self { shards: self.shards.clone(), route: self.route.clone() }
    }
}

impl<A: Stored> Batcher<A>
where
    A::Command: Clone + Send + 'static,
    A::Error: Send,
{
    /// Starts the committers; they end when the last handle is dropped.
    pub fn spawn(store: Store) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                let (jobs, queue) = mpsc::channel::<Job<A>>(MAX_BATCH * 4);
                tokio::spawn(commit_loop(store.clone(), queue));
                jobs
            })
            .collect();
        Self { shards, route: Default::default() }
    }

    /// Executes one command as part of the next group commit.
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Committed<A>, StoreError<A::Error>> {
        let (reply, answer) = oneshot::channel();
        let job = Job { id: id.to_owned(), command, meta: meta.clone(), reply };
        let gone = || StoreError::Unavailable("the group committer stopped".into());
        let shard = self.route.hash_one(id) as usize % self.shards.len();
        self.shards[shard].send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn commit_loop<A: Stored>(store: Store, mut queue: mpsc::Receiver<Job<A>>)
where
    A::Command: Clone + Send + 'static,
    A::Error: Send,
{
    let mut cache = StateCache::<A>::new(CACHED_STATES / SHARDS);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (items, replies): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|job| ((job.id, job.command, job.meta), job.reply)).unzip();
        let results = store.execute_batch::<A>(items, Some(&mut cache)).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}
