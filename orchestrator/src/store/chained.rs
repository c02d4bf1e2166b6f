//! A command and the follow-up its outcome calls for on another aggregate,
//! stored in one transaction: a device's successful update and the firmware
//! version its inventory now shows, say. Both commit or neither does, also
//! when another writer got to either aggregate first (both are decided again,
//! together), and the caller waits for one commit instead of two.

use std::collections::BTreeSet;
use std::sync::Arc;

use cqrs_es::Aggregate;
use ota_domain::CommandMeta;
use tokio::sync::{mpsc, oneshot};

use super::batch::{insert_rows, nothing_stored, take_out, unavailable, BatchItem, Decided};
use super::cache::StateCache;
use super::commit::{self, CommitError};
use super::tally;
use super::{backoff, Cause, Committed, Store, StoreError, StoreFault, Stored, MAX_ATTEMPTS};

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
    /// one transaction. Results come back in the order of `items`. A command
    /// whose aggregate, or whose follow-up's aggregate, another writer got to
    /// first is decided again with its follow-up, in a later transaction of its
    /// own: a pair is never split.
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
        let (items, follows): (Vec<_>, Vec<_>) = items.into_iter().unzip();
        let mut results: Vec<Option<Chained<A, B>>> = items.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..items.len()).collect();
        for attempt in 1..=MAX_ATTEMPTS {
            let round: Vec<BatchItem<A>> = pending.iter().map(|&i| items[i].clone()).collect();
            let round_follows: Vec<FollowUp<A, B>> = pending.iter().map(|&i| follows[i].clone()).collect();
            let outcomes = self.chained_round(round, &round_follows, cache_a, cache_b).await;
            let mut again = Vec::new();
            for (index, outcome) in pending.into_iter().zip(outcomes) {
                match outcome {
                    Some(outcome) => results[index] = Some(outcome),
                    None => again.push(index),
                }
            }
            if again.is_empty() {
                break;
            }
            tracing::debug!(
                aggregate = A::TYPE,
                again = again.len(),
                attempt,
                "chained commands lost a race, deciding again"
            );
            tokio::time::sleep(backoff(attempt)).await;
            pending = again;
        }
        results
            .into_iter()
            .zip(items)
            .map(|(result, (id, ..))| {
                result
                    .unwrap_or_else(|| (Err(StoreError::Contended { aggregate_id: id, attempts: MAX_ATTEMPTS }), None))
            })
            .collect()
    }

    /// One transaction of a chained batch; `None` for a command to decide again.
    async fn chained_round<A: Stored, B: Stored>(
        &self,
        items: Vec<BatchItem<A>>,
        follows: &[FollowUp<A, B>],
        cache_a: &mut StateCache<A>,
        cache_b: &mut StateCache<B>,
    ) -> Vec<Option<Chained<A, B>>>
    where
        A::Command: Clone + Send,
        B::Command: Clone + Send,
    {
        let n = items.len();
        let fail = |cause: &Cause| -> Vec<Option<Chained<A, B>>> {
            unavailable::<Committed<A>, A::Error>(n, cause).into_iter().map(|a| Some((a, None))).collect()
        };
        let (items, mut decided_a) = match self.decide_batch(items, Some(&mut *cache_a)).await {
            Ok(decided) => decided,
            Err(cause) => return fail(&cause),
        };
        // The follow-ups are decided before the transaction opens, so it holds
        // its locks only for the inserts.
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
        let pairs: Vec<(String, String)> =
            b_of.iter().zip(&b_items).map(|(&i, (b, ..))| (items[i].0.clone(), b.clone())).collect();
        let (broken_a, broken_b) = match self.store_chained(&decided_a, &decided_b, &pairs).await {
            Ok(broken) => broken,
            Err(e) => {
                for id in &decided_a.ids {
                    cache_a.forget(id);
                }
                for id in &decided_b.ids {
                    cache_b.forget(id);
                }
                if nothing_stored(&e) {
                    tracing::debug!(error = %e, "chained group commit aborted; decided again");
                    return (0..n).map(|_| None).collect();
                }
                return fail(&(Arc::new(e) as Cause));
            }
        };
        if !decided_a.rows.is_empty() || !decided_b.rows.is_empty() {
            self.committed.notify_one();
        }
        for (id, (state, version)) in std::mem::take(&mut decided_a.states) {
            match broken_a.contains(&id) {
                true => cache_a.forget(&id),
                false => cache_a.remember(id, state, version),
            }
        }
        for (id, (state, version)) in std::mem::take(&mut decided_b.states) {
            match broken_b.contains(&id) {
                true => cache_b.forget(&id),
                false => cache_b.remember(id, state, version),
            }
        }
        let mut follow_ups: Vec<Option<Outcome<B>>> = (0..n).map(|_| None).collect();
        for (index, outcome) in b_of.into_iter().zip(decided_b.outcomes) {
            follow_ups[index] = outcome;
        }
        items
            .iter()
            .zip(decided_a.outcomes)
            .zip(follow_ups)
            .map(|(((id, ..), a), b)| {
                (!broken_a.contains(id))
                    .then(|| (a.unwrap_or_else(|| Err(StoreError::unavailable(StoreFault("no outcome")))), b))
            })
            .collect()
    }

    /// Inserts a batch and its follow-ups and commits. `pairs` links each
    /// command's aggregate to its follow-up's. Returns the aggregates whose rows
    /// were taken back out: those another writer got to first, every command
    /// whose follow-up's aggregate is among them and every follow-up whose
    /// command's is, and (since an aggregate's later rows count on its earlier
    /// ones) all of an aggregate's rows once one of them goes.
    async fn store_chained<A: Stored, B: Stored>(
        &self,
        decided_a: &Decided<A>,
        decided_b: &Decided<B>,
        pairs: &[(String, String)],
    ) -> Result<(BTreeSet<String>, BTreeSet<String>), CommitError>
    where
        A::Command: Clone + Send,
        B::Command: Clone + Send,
    {
        let aborted = CommitError::Aborted;
        let mut tx = self.pool().begin().await.map_err(aborted)?;
        let inserted = insert_rows(&mut tx, A::TYPE, &decided_a.rows).await.map_err(aborted)?;
        let (mut broken_a, mut inserted_a, xid_a) = (inserted.conflicted, inserted.rows, inserted.xid);
        let mut broken_b: BTreeSet<String> =
            pairs.iter().filter(|(a, _)| broken_a.contains(a)).map(|(_, b)| b.clone()).collect();
        let rows_b: Vec<_> = decided_b.rows.iter().filter(|r| !broken_b.contains(&r.aggregate_id)).cloned().collect();
        let inserted = insert_rows(&mut tx, B::TYPE, &rows_b).await.map_err(aborted)?;
        let (mut inserted_b, xid) = (inserted.rows, xid_a.or(inserted.xid));
        broken_b.extend(inserted.conflicted);
        loop {
            let more_a: Vec<String> = pairs
                .iter()
                .filter(|(a, b)| broken_b.contains(b) && !broken_a.contains(a))
                .map(|(a, _)| a.clone())
                .collect();
            let more_b: Vec<String> = pairs
                .iter()
                .filter(|(a, b)| (broken_a.contains(a) || more_a.contains(a)) && !broken_b.contains(b))
                .map(|(_, b)| b.clone())
                .collect();
            if more_a.is_empty() && more_b.is_empty() {
                break;
            }
            broken_a.extend(more_a);
            broken_b.extend(more_b);
        }
        take_out(&mut tx, A::TYPE, &mut inserted_a, &broken_a).await.map_err(aborted)?;
        take_out(&mut tx, B::TYPE, &mut inserted_b, &broken_b).await.map_err(aborted)?;
        let counted = decided_a.tallies_except(&broken_a).chain(decided_b.tallies_except(&broken_b));
        tally::add(&mut tx, self.next_tally_slot(), counted).await.map_err(aborted)?;
        commit::commit(self.pool(), tx, xid).await?;
        Ok((broken_a, broken_b))
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
