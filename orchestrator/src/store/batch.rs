//! Group commit: many commands' events in one transaction.
//!
//! Every aggregate keeps its optimistic concurrency. The batch is inserted with
//! `ON CONFLICT DO NOTHING`; an aggregate that another writer advanced in the
//! meantime has its rows taken back out inside the same transaction and its
//! commands redone one by one through `execute` (reload, decide again). A
//! conflict therefore fails only its own commands, and they are retried.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, EventEnvelope};
use ota_domain::device_update::{tally_delta, TallyKey};
use ota_domain::CommandMeta;
use sqlx::PgConnection;

use super::cache::StateCache;
use super::commit::{self, CommitError};
use super::rows::decode_row;
use super::tally;
use super::{backoff, Cause, Committed, Store, StoreError, StoreFault, Stored, MAX_ATTEMPTS};

/// One command of a batch: aggregate id, command, and who ordered it.
pub type BatchItem<A> = (String, <A as Aggregate>::Command, CommandMeta);

type Outcome<A> = Result<Committed<A>, StoreError<<A as Aggregate>::Error>>;

impl Store {
    /// Loads many event-sourced aggregates with one query.
    pub async fn load_many<A: Stored>(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, (A, usize)>, StoreError<A::Error>>
    where
        A::Command: Clone + Send,
    {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata FROM events
             WHERE aggregate_type = $1 AND aggregate_id = ANY($2) ORDER BY aggregate_id, sequence",
        )
        .bind(A::TYPE)
        .bind(ids)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::unavailable)?;
        let mut states: HashMap<String, (A, usize)> = HashMap::with_capacity(ids.len());
        for row in rows {
            let envelope = decode_row::<A>(&row)?;
            let (state, version) = states.entry(envelope.aggregate_id).or_default();
            state.apply(envelope.payload);
            *version = envelope.sequence;
        }
        Ok(states)
    }

    /// Brings a remembered state up to date with the events stored after `version`
    /// (a `version` of 0 loads the aggregate whole, from its snapshot). A campaign
    /// of 100k devices is megabytes of snapshot to read and decode; the events since
    /// the last look are usually none.
    pub async fn refresh<A: Stored>(
        &self,
        id: &str,
        state: &mut A,
        version: &mut usize,
    ) -> Result<(), StoreError<A::Error>>
    where
        A::Command: Clone + Send,
    {
        if *version == 0 {
            (*state, *version) = self.load_stream::<A>(id).await?;
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata FROM events
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(id)
        .bind(i64::try_from(*version).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::unavailable)?;
        for row in rows {
            let envelope = decode_row::<A>(&row)?;
            state.apply(envelope.payload);
            *version = envelope.sequence;
        }
        Ok(())
    }

    /// Decides every command and stores all their events in one transaction.
    /// Results come back in the order of `items`.
    pub async fn execute_many<A: Stored>(&self, items: Vec<BatchItem<A>>) -> Vec<Outcome<A>>
    where
        A::Command: Clone + Send,
    {
        if A::SNAPSHOT_EVERY.is_some() || items.len() < 2 {
            let mut out = Vec::with_capacity(items.len());
            for (id, command, meta) in items {
                out.push(self.execute_stream::<A>(&id, command, &meta).await);
            }
            return out;
        }
        let n = items.len();
        let (items, decided) = match self.decide_batch(items, None).await {
            Ok(decided) => decided,
            Err(cause) => return unavailable(n, &cause),
        };
        let conflicted = match self.store_decided(&decided).await {
            Ok(conflicted) => conflicted,
            Err(e) if nothing_stored(&e) => {
                // Every command is decided again on its own.
                tracing::debug!(error = %e, "group commit aborted; redone singly");
                decided.ids.iter().cloned().collect()
            }
            Err(e) => return unavailable(items.len(), &(Arc::new(e) as Cause)),
        };
        if !decided.rows.is_empty() {
            self.committed.notify_one();
        }
        self.settle(items, decided, &conflicted, None).await
    }

    /// One command on an aggregate without snapshots: decided and stored like a
    /// batch of one (so its counters are kept in its transaction), and decided
    /// again when another writer got to the aggregate first.
    pub(super) async fn append_one<A: Stored>(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Committed<A>, StoreError<A::Error>>
    where
        A::Command: Clone + Send,
    {
        for attempt in 1..=MAX_ATTEMPTS {
            let item = (id.to_owned(), command.clone(), meta.clone());
            let (_, mut decided) = self.decide_batch::<A>(vec![item], None).await.map_err(StoreError::Unavailable)?;
            let outcome = decided.outcomes.pop().flatten();
            let outcome = outcome.unwrap_or_else(|| Err(StoreError::unavailable(StoreFault("no outcome"))));
            if decided.rows.is_empty() {
                return outcome;
            }
            match self.store_decided(&decided).await {
                Ok(conflicted) if conflicted.is_empty() => {
                    self.committed.notify_one();
                    return outcome;
                }
                Ok(_) => metrics::counter!("ota_command_conflicts_total", "aggregate" => A::TYPE).increment(1),
                Err(e) if nothing_stored(&e) => tracing::debug!(error = %e, "command aborted; deciding again"),
                Err(e) => return Err(StoreError::unavailable(e)),
            }
            tracing::debug!(aggregate = A::TYPE, id, attempt, "append conflict, deciding again");
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(StoreError::Contended { aggregate_id: id.to_owned(), attempts: MAX_ATTEMPTS })
    }

    /// Inserts a decided batch with its counters and commits. Returns the
    /// aggregates another writer got to first: their rows and counts are left out.
    async fn store_decided<A: Stored>(&self, decided: &Decided<A>) -> Result<BTreeSet<String>, CommitError>
    where
        A::Command: Clone + Send,
    {
        let mut tx = self.pool().begin().await.map_err(CommitError::Aborted)?;
        let inserted = insert_rows(&mut tx, A::TYPE, &decided.rows).await.map_err(CommitError::Aborted)?;
        let counted = decided.tallies_except(&inserted.conflicted);
        tally::add(&mut tx, self.next_tally_slot(), counted).await.map_err(CommitError::Aborted)?;
        commit::commit(self.pool(), tx, inserted.xid).await?;
        Ok(inserted.conflicted)
    }

    /// Decides a batch on remembered or freshly read states, without storing it.
    pub(super) async fn decide_batch<A: Stored>(
        &self,
        items: Vec<BatchItem<A>>,
        cache: Option<&mut StateCache<A>>,
    ) -> Result<(Vec<BatchItem<A>>, Decided<A>), Cause>
    where
        A::Command: Clone + Send,
    {
        let ids: Vec<String> = items.iter().map(|(id, ..)| id.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let (mut states, to_read) = match cache {
            Some(cache) => cache.lookup(&ids, &items),
            None => (HashMap::new(), ids.clone()),
        };
        states.extend(self.load_many::<A>(&to_read).await.map_err(StoreError::into_cause)?);
        let mut outcomes: Vec<Option<Outcome<A>>> = Vec::with_capacity(items.len());
        let mut rows: Vec<SerializedEvent> = Vec::new();
        let mut tallies = tally::Deltas::new();
        for (id, command, meta) in &items {
            let (state, version) = states.entry(id.clone()).or_default();
            match state.decide(command.clone()) {
                Err(e) => outcomes.push(Some(Err(StoreError::Rejected(e)))),
                Ok(events) => {
                    let metadata = meta.to_map();
                    let mut envelopes = Vec::with_capacity(events.len());
                    for event in events {
                        *version += 1;
                        let before = state.tally_slot();
                        state.apply(event.clone());
                        let moved = tally_delta(before, state.tally_slot());
                        if !moved.is_empty() {
                            tallies.entry(id.clone()).or_default().extend(moved);
                        }
                        let envelope = EventEnvelope {
                            aggregate_id: id.clone(),
                            sequence: *version,
                            payload: event,
                            metadata: metadata.clone(),
                        };
                        rows.push(SerializedEvent::try_from(&envelope).map_err(|e| Arc::new(e) as Cause)?);
                        envelopes.push(envelope);
                    }
                    outcomes.push(Some(Ok(Committed { state: state.clone(), version: *version, events: envelopes })));
                }
            }
        }
        // One global order of index locks: two batches never wait on each other in a cycle.
        rows.sort_by(|a, b| (&a.aggregate_id, a.sequence).cmp(&(&b.aggregate_id, b.sequence)));
        Ok((items, Decided { ids, states, outcomes, rows, tallies }))
    }

    /// After the commit: remembers the stored states and redoes, one by one, the
    /// commands of aggregates another writer got to first.
    pub(super) async fn settle<A: Stored>(
        &self,
        items: Vec<BatchItem<A>>,
        decided: Decided<A>,
        conflicted: &BTreeSet<String>,
        mut cache: Option<&mut StateCache<A>>,
    ) -> Vec<Outcome<A>>
    where
        A::Command: Clone + Send,
    {
        if let Some(cache) = cache.as_deref_mut() {
            for (id, (state, version)) in decided.states {
                if !conflicted.contains(&id) {
                    cache.remember(id, state, version);
                }
            }
        }
        metrics::histogram!("ota_group_commit_batch_size", "aggregate" => A::TYPE).record(items.len() as f64);
        let mut results = Vec::with_capacity(items.len());
        for ((id, command, meta), outcome) in items.into_iter().zip(decided.outcomes) {
            if conflicted.contains(&id) {
                metrics::counter!("ota_command_conflicts_total", "aggregate" => A::TYPE).increment(1);
                let redone = self.execute_stream::<A>(&id, command, &meta).await;
                if let Some(cache) = cache.as_deref_mut() {
                    match &redone {
                        Ok(committed) => cache.remember(id, committed.state.clone(), committed.version),
                        Err(_) => cache.forget(&id),
                    }
                }
                results.push(redone);
            } else {
                let outcome = outcome.unwrap_or_else(|| Err(StoreError::unavailable(StoreFault("no outcome"))));
                super::count_outcome(&outcome);
                results.push(outcome);
            }
        }
        results
    }
}

/// A batch decided but not yet stored.
pub(super) struct Decided<A: Stored>
where
    A::Command: Clone + Send,
{
    /// Every aggregate of the batch, once.
    pub ids: Vec<String>,
    /// Each aggregate's state and version after the batch's commands.
    pub states: HashMap<String, (A, usize)>,
    /// Per command, in the batch's order.
    pub outcomes: Vec<Option<Outcome<A>>>,
    pub rows: Vec<SerializedEvent>,
    /// Counter changes by aggregate, stored with the rows.
    pub tallies: tally::Deltas,
}

impl<A: Stored> Decided<A>
where
    A::Command: Clone + Send,
{
    /// The counter changes of every aggregate but `left_out`'s.
    pub fn tallies_except<'a>(
        &'a self,
        left_out: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = &'a (TallyKey, i64)> + 'a {
        self.tallies.iter().filter(|(id, _)| !left_out.contains(*id)).flat_map(|(_, deltas)| deltas)
    }
}

pub(super) fn unavailable<T, E: std::error::Error + 'static>(n: usize, cause: &Cause) -> Vec<Result<T, StoreError<E>>> {
    (0..n).map(|_| Err(StoreError::Unavailable(cause.clone()))).collect()
}

/// The `(aggregate_id, sequence)` of event rows.
pub(super) type RowKeys = BTreeSet<(String, i64)>;

/// What an insert of a batch's rows did.
pub(super) struct Inserted {
    /// Aggregates another writer got to first; their rows of this batch are
    /// taken out again before the caller commits.
    pub conflicted: BTreeSet<String>,
    /// The rows that stay in.
    pub rows: RowKeys,
    /// The transaction's id, if a row went in.
    pub xid: Option<commit::Xid>,
}

/// Inserts rows of one aggregate type in one statement inside the caller's
/// transaction (the single-command path's too).
pub(super) async fn insert_rows(
    tx: &mut PgConnection,
    aggregate_type: &str,
    rows: &[SerializedEvent],
) -> Result<Inserted, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Inserted { conflicted: BTreeSet::new(), rows: RowKeys::new(), xid: None });
    }
    let inserted: Vec<(String, i64, String)> = sqlx::query_as(&format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT $1, * FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
             ON CONFLICT DO NOTHING RETURNING aggregate_id, sequence, {}",
        commit::CURRENT_XID
    ))
    .bind(aggregate_type)
    .bind(rows.iter().map(|r| r.aggregate_id.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.sequence as i64).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_type.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_version.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.payload.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.metadata.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let xid = inserted.first().map(|(_, _, xid)| commit::Xid(xid.clone()));
    let mut done: RowKeys = inserted.into_iter().map(|(id, sequence, _)| (id, sequence)).collect();
    let conflicted: BTreeSet<String> = rows
        .iter()
        .filter(|r| !done.contains(&(r.aggregate_id.clone(), r.sequence as i64)))
        .map(|r| r.aggregate_id.clone())
        .collect();
    if !conflicted.is_empty() {
        take_out(tx, aggregate_type, &mut done, &conflicted).await?;
        tracing::debug!(aggregate = aggregate_type, conflicted = conflicted.len(), "group commit conflicts, redone");
    }
    Ok(Inserted { conflicted, rows: done, xid })
}

/// Deletes, inside the caller's transaction, the rows this batch inserted for
/// `aggregates` (only those: a key alone could be another writer's row).
pub(super) async fn take_out(
    tx: &mut PgConnection,
    aggregate_type: &str,
    inserted: &mut RowKeys,
    aggregates: &BTreeSet<String>,
) -> Result<(), sqlx::Error> {
    let (ids, sequences): (Vec<String>, Vec<i64>) =
        inserted.iter().filter(|(id, _)| aggregates.contains(id)).cloned().unzip();
    if ids.is_empty() {
        return Ok(());
    }
    // The server's role may not DELETE events (migration 0018); this function
    // removes only rows the calling transaction wrote itself.
    sqlx::query("SELECT take_out_own_events($1, $2::text[], $3::bigint[])")
        .bind(aggregate_type)
        .bind(ids)
        .bind(sequences)
        .execute(&mut *tx)
        .await?;
    inserted.retain(|(id, _)| !aggregates.contains(id));
    Ok(())
}

/// A group commit that stored nothing and is worth redoing command by command: a
/// deadlock or serialization failure, or an ambiguous commit the server says it
/// rolled back. (Any other refusal would refuse the redo too, and without a
/// connection each redo would wait out the pool's timeout.)
pub(super) fn nothing_stored(error: &CommitError) -> bool {
    match error {
        CommitError::Aborted(e) => {
            e.as_database_error().and_then(|e| e.code()).is_some_and(|code| code == "40P01" || code == "40001")
        }
        // The server was reachable a moment ago to say so.
        CommitError::RolledBack(_) => true,
        CommitError::Unknown { .. } => false,
    }
}
