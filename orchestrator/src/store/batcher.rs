//! Group commit for concurrent callers: commands arriving together (device
//! reports from many devices, say) are decided and stored in one transaction,
//! and each caller gets its own result once that transaction has committed.

use ota_domain::CommandMeta;
use tokio::sync::{mpsc, oneshot};

use super::{Committed, Store, StoreError, Stored};

/// Commands per transaction at most.
const MAX_BATCH: usize = 1000;

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

/// A handle to a background group committer for one aggregate type.
pub struct Batcher<A: Stored>
where
    A::Command: Clone + Send,
{
    jobs: mpsc::Sender<Job<A>>,
}

impl<A: Stored> Clone for Batcher<A>
where
    A::Command: Clone + Send,
{
    fn clone(&self) -> Self {
        Self { jobs: self.jobs.clone() }
    }
}

impl<A: Stored> Batcher<A>
where
    A::Command: Clone + Send + 'static,
    A::Error: Send,
{
    /// Starts the committer; it ends when the last handle is dropped.
    pub fn spawn(store: Store) -> Self {
        let (jobs, mut queue) = mpsc::channel::<Job<A>>(MAX_BATCH * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (items, replies): (Vec<_>, Vec<_>) =
                    batch.drain(..).map(|job| ((job.id, job.command, job.meta), job.reply)).unzip();
                let results = store.execute_many::<A>(items).await;
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
        });
        Self { jobs }
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
        self.jobs.send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}
