//! A command and the follow-up its outcome calls for on another aggregate,
//! stored in one transaction: a device's successful update and the firmware
//! version its inventory now shows, say. Both commit or neither does, and the
//! caller waits for one commit instead of two.

use std::collections::BTreeSet;
use std::sync::Arc;

use cqrs_es::Aggregate;
use ota_domain::CommandMeta;
use tokio::sync::{mpsc, oneshot};

use super::batch::{insert_rows, nothing_stored, unavailable, BatchItem, Decided};
use super::cache::StateCache;
use super::commit::{self, CommitError};
use super::{Cause, Committed, Store, StoreError, StoreFault, Stored};

/// Given a command's outcome, the command (and aggregate id) that follows on `B`.
pub type FollowUp<A, B> =
    Arc<dyn Fn(&Committed<A>) -> Option<(String, <B as Aggregate>::Command)> + Send + Sync + 'static>;

type Outcome<A> = Result<Committed<A>, StoreError<<A as Aggregate>::Error>>;

/// The command's outcome and, if it called for one, its follow-up's.
pub type Chained<A, B> = (Outcome<A>, Option<Outcome<B>>);

/// Commands per transaction at most.
const MAX_BATCH: usize = 1000;
/// Committers, each with its own transaction in flight, split by aggregate id.
const SHARDS: usize = 4;
/// States remembered per aggregate type (over all shards).
const CACHED_STATES: usize = 200_000;

impl Store {
    /// Decides and stores a batch of `A` commands and their follow-ups on `B` in
    /// one transaction. Results come back in the order of `items`.
    pub(super) async fn execute_chained<A: Stored, B: Stored>(
        &self,
        items: Vec<(BatchItem<A>, FollowUp<A, B>)>,
        cache_a: &mut StateCache<A>,
        cache_b: &mut StateCache<B>,
    ) -> Vec<Chained<A, B>>
    where
        A::Command: Clone + Send,
        B::Command: Clone + Send,
    {
        let n = items.len();
        let (items, follows): (Vec<_>, Vec<_>) = items.into_iter().unzip();
        let fail =
            |cause: &Cause| unavailable::<Committed<A>, A::Error>(n, cause).into_iter().map(|a| (a, None)).collect();
        let (items, decided_a) = match self.decide_batch(items, Some(&mut *cache_a)).await {
            Ok(decided) => decided,
            Err(cause) => return fail(&cause),
        };
        // The follow-ups are decided before the transaction opens, so it holds
        // its locks only for the two inserts.
        let mut b_of = Vec::new();
        let mut b_items = Vec::new();
        for (index, ((_, _, meta), outcome)) in items.iter().zip(&decided_a.outcomes).enumerate() {
            if let Some(Ok(committed)) = outcome {
                if let Some((b_id, command)) = follows[index](committed) {
                    b_of.push(index);
                    b_items.push((b_id, command, meta.clone()));
                }
            }
        }
        let (b_items, mut decided_b) = match self.decide_batch::<B>(b_items, Some(&mut *cache_b)).await {
            Ok(decided) => decided,
            Err(cause) => return fail(&cause),
        };
        let stored = self.store_chained(&items, &decided_a, &b_of, &b_items, &decided_b).await;
        let (conflicted_a, conflicted_b) = match stored {
            Ok(stored) => stored,
            Err(e) if nothing_stored(&e) => {
                // Nothing was stored; every command is decided again on its own.
                tracing::debug!(error = %e, "chained group commit aborted by the database; redone singly");
                let mut out = Vec::with_capacity(n);
                for ((id, command, meta), follow) in items.into_iter().zip(&follows) {
                    let a = self.execute_stream::<A>(&id, command, &meta).await;
                    let b = self.follow_singly(&a, follow, &meta).await;
                    out.push((a, b));
                }
                return out;
            }
            Err(e) => return fail(&(Arc::new(e) as Cause)),
        };
        if !decided_a.rows.is_empty() || !decided_b.rows.is_empty() {
            self.committed.notify_one();
        }
        // A command redone on its own after a conflict has its follow-up redone with it.
        let (b_of, (b_items, b_outcomes)): (Vec<usize>, (Vec<BatchItem<B>>, Vec<_>)) = b_of
            .into_iter()
            .zip(b_items.into_iter().zip(std::mem::take(&mut decided_b.outcomes)))
            .filter(|(index, _)| !conflicted_a.contains(&items[*index].0))
            .unzip();
        decided_b.outcomes = b_outcomes;
        let metas: Vec<CommandMeta> = items.iter().map(|(_, _, meta)| meta.clone()).collect();
        let redone: Vec<bool> = items.iter().map(|(id, ..)| conflicted_a.contains(id)).collect();
        let results_a = self.settle(items, decided_a, &conflicted_a, Some(cache_a)).await;
        let mut results_b: Vec<Option<Outcome<B>>> = (0..n).map(|_| None).collect();
        let settled_b = self.settle(b_items, decided_b, &conflicted_b, Some(cache_b)).await;
        for (index, outcome) in b_of.into_iter().zip(settled_b) {
            results_b[index] = Some(outcome);
        }
        let mut out = Vec::with_capacity(n);
        for (index, (a, b)) in results_a.into_iter().zip(results_b).enumerate() {
            let b = match redone[index] {
                // Redone on its own after a conflict: its follow-up is too.
                true => self.follow_singly(&a, &follows[index], &metas[index]).await,
                false => b,
            };
            out.push((a, b));
        }
        out
    }

    /// Inserts the batch and the follow-ups of the commands that stay in it, and
    /// commits. A follow-up whose command lost to another writer is left out, and
    /// so are the later follow-ups on the same aggregate (their sequences counted
    /// on it); those are reported as conflicted and redone.
    async fn store_chained<A: Stored, B: Stored>(
        &self,
        items: &[BatchItem<A>],
        decided_a: &Decided<A>,
        b_of: &[usize],
        b_items: &[BatchItem<B>],
        decided_b: &Decided<B>,
    ) -> Result<(BTreeSet<String>, BTreeSet<String>), CommitError>
    where
        A::Command: Clone + Send,
        B::Command: Clone + Send,
    {
        let (mut tx, xid) = commit::begin(self.pool()).await.map_err(CommitError::Aborted)?;
        let conflicted_a = insert_rows::<A>(&mut tx, &decided_a.rows).await.map_err(CommitError::Aborted)?;
        let orphaned: BTreeSet<String> = b_of
            .iter()
            .zip(b_items)
            .filter(|(index, _)| conflicted_a.contains(&items[**index].0))
            .map(|(_, (b_id, ..))| b_id.clone())
            .collect();
        let mut conflicted_b = if orphaned.is_empty() {
            insert_rows::<B>(&mut tx, &decided_b.rows).await
        } else {
            let rows: Vec<_> = decided_b.rows.iter().filter(|r| !orphaned.contains(&r.aggregate_id)).cloned().collect();
            insert_rows::<B>(&mut tx, &rows).await
        }
        .map_err(CommitError::Aborted)?;
        commit::commit(self.pool(), tx, xid).await?;
        conflicted_b.extend(orphaned);
        Ok((conflicted_a, conflicted_b))
    }

    async fn follow_singly<A: Stored, B: Stored>(
        &self,
        outcome: &Outcome<A>,
        follow: &FollowUp<A, B>,
        meta: &CommandMeta,
    ) -> Option<Outcome<B>>
    where
        A::Command: Clone + Send,
        B::Command: Clone + Send,
    {
        let (id, command) = follow(outcome.as_ref().ok()?)?;
        Some(self.execute_stream::<B>(&id, command, meta).await)
    }
}

struct Job<A: Stored, B: Stored>
where
    A::Command: Clone + Send,
    B::Command: Clone + Send,
{
    item: BatchItem<A>,
    follow: FollowUp<A, B>,
    reply: oneshot::Sender<Chained<A, B>>,
}

/// Group commit of `A` commands with their follow-ups on `B`, for concurrent callers.
pub struct ChainedBatcher<A: Stored, B: Stored>
where
    A::Command: Clone + Send,
    B::Command: Clone + Send,
{
    shards: Arc<[mpsc::Sender<Job<A, B>>]>,
    route: std::collections::hash_map::RandomState,
}

impl<A: Stored, B: Stored> Clone for ChainedBatcher<A, B>
where
    A::Command: Clone + Send,
    B::Command: Clone + Send,
{
    fn clone(&self) -> Self {
        Self { shards: self.shards.clone(), route: self.route.clone() }
    }
}

impl<A: Stored, B: Stored> ChainedBatcher<A, B>
where
    A::Command: Clone + Send + Sync + 'static,
    B::Command: Clone + Send + Sync + 'static,
    A::Error: Send + Sync,
    B::Error: Send + Sync,
{
    /// Starts the committers; they end when the last handle is dropped.
    pub fn spawn(store: Store) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                let (jobs, queue) = mpsc::channel::<Job<A, B>>(MAX_BATCH * 4);
                tokio::spawn(commit_loop(store.clone(), queue));
                jobs
            })
            .collect();
        Self { shards, route: Default::default() }
    }

    /// Executes one command, and the follow-up its outcome calls for, as part
    /// of the next group commit.
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
        follow: FollowUp<A, B>,
    ) -> Result<Chained<A, B>, StoreError<A::Error>> {
        use std::hash::BuildHasher;
        let (reply, answer) = oneshot::channel();
        let job = Job { item: (id.to_owned(), command, meta.clone()), follow, reply };
        let gone = || StoreError::unavailable(StoreFault("the group committer stopped"));
        let shard = self.route.hash_one(id) as usize % self.shards.len();
        self.shards[shard].send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }
}

async fn commit_loop<A: Stored, B: Stored>(store: Store, mut queue: mpsc::Receiver<Job<A, B>>)
where
    A::Command: Clone + Send + Sync + 'static,
    B::Command: Clone + Send + Sync + 'static,
    A::Error: Send + Sync,
    B::Error: Send + Sync,
{
    let mut cache_a = StateCache::<A>::new(CACHED_STATES / SHARDS);
    let mut cache_b = StateCache::<B>::new(CACHED_STATES / SHARDS);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (items, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|job| ((job.item, job.follow), job.reply)).unzip();
        let results = store.execute_chained::<A, B>(items, &mut cache_a, &mut cache_b).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}
