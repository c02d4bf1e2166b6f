//! The states a group committer last stored, so the next command on the same
//! aggregate (a device's next report) is decided without reading its events.
//!
//! An entry may be stale: another writer (the process manager, another server)
//! may have appended since. That is safe for every command that appends, since
//! the append then collides with the other writer's sequence and the command is
//! redone on fresh state. It is not safe for a command a stale state would
//! refuse or find a no-op, since nothing would be written to collide; those are
//! always decided again on freshly read state.

use std::collections::{BTreeSet, HashMap};

use hashlink::LruCache;

use super::{BatchItem, Stored};

pub struct StateCache<A> {
    states: LruCache<String, (A, usize)>,
}

impl<A: Stored> StateCache<A>
where
    A::Command: Clone + Send,
{
    pub fn new(capacity: usize) -> Self {
        Self { states: LruCache::new(capacity.max(1)) }
    }

    /// Splits `ids` into the states known here and the ids to read, leaving out
    /// (and forgetting) any state on which a command of `items` would be refused
    /// or change nothing.
    pub fn lookup(&mut self, ids: &[String], items: &[BatchItem<A>]) -> (HashMap<String, (A, usize)>, Vec<String>) {
        let mut known = HashMap::with_capacity(ids.len());
        let mut to_read = Vec::new();
        for id in ids {
            match self.states.get(id) {
                Some(state) => {
                    known.insert(id.clone(), state.clone());
                }
                None => to_read.push(id.clone()),
            }
        }
        for id in doubtful(items, &known) {
            known.remove(&id);
            self.states.remove(&id);
            to_read.push(id);
        }
        (known, to_read)
    }

    pub fn remember(&mut self, id: String, state: A, version: usize) {
        self.states.insert(id, (state, version));
    }

    pub fn forget(&mut self, id: &str) {
        self.states.remove(id);
    }
}

/// Aggregates on whose known state some command of the batch would be refused
/// or would be a no-op.
fn doubtful<A: Stored>(items: &[BatchItem<A>], known: &HashMap<String, (A, usize)>) -> BTreeSet<String>
where
    A::Command: Clone + Send,
{
    let mut trial: HashMap<&str, A> = HashMap::new();
    let mut doubtful = BTreeSet::new();
    for (id, command, _) in items {
        let Some((state, _)) = known.get(id) else { continue };
        if doubtful.contains(id) {
            continue;
        }
        let state = trial.entry(id).or_insert_with(|| state.clone());
        match state.decide(command.clone()) {
            Ok(events) if !events.is_empty() => events.into_iter().for_each(|event| state.apply(event)),
            _ => {
                doubtful.insert(id.clone());
            }
        }
    }
    doubtful
}
