//! An in-memory mirror of crimux's sandbox and container records, so ListPodSandbox and
//! ListContainers need not call containerd's Containers.List and decode every object's
//! JSON record on each relist (kubelet's PLEG relists every second).
//!
//! It follows the task mirror (`task_cache.rs`) step by step:
//! - **Marks.** Every write crimux makes to a container object (create, update, delete,
//!   all in `object.rs`) marks that object *dirty* when the call returns, or when its
//!   future is dropped mid-call; so does every `/containers/*` event containerd reports
//!   (the monitor subscribes to them), which is how a change by another client is seen.
//!   A list first reads each dirty object again (Containers.Get, one object), so a record
//!   is never stale once crimux's own write returned or its event was received.
//! - **Resyncs.** The mirror is trusted only while the event stream is known to be
//!   subscribed and a full Containers.List has completed since. When the stream ends or
//!   fails the mirror turns cold: every list then does the full read (and refills the
//!   mirror) until a resync started after the stream came back completes.
//! - **Tickets.** Every read takes a ticket from one counter before it is issued, and an
//!   entry is only overwritten by a read with a newer ticket. An object that is gone (or
//!   is not crimux's) leaves a tombstone carrying its ticket, so an older read cannot
//!   bring it back. A write that lands while a resync's List is in flight marks its
//!   object with a newer counter value, so the resync leaves it dirty and it is read
//!   again: a create racing a refill is never lost.
//!
//! Tombstones go with the next resync; one is forced once [`MAX_TOMBSTONES`] pile up, so a
//! node that churns pods for months without a containerd restart keeps a bounded mirror.
//!
//! Architecture Invariant: the bookkeeping is synchronous, under a std mutex that is never
//! held across a containerd call; [`records`] makes the calls with the lock released.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use containerd_client::services::v1::Container;
use crimux_core::Result;
use futures::future::join_all;

use super::object;
use crate::backend::Inner;
use crate::container::record::{ContainerRecord, CONTAINER_EXTENSION};
use crate::sandbox::record::{
    SandboxRecord, KIND_CONTAINER, KIND_LABEL, KIND_SANDBOX, SANDBOX_EXTENSION,
};

/// Tombstones kept before a list resyncs (one full Containers.List) to drop them.
const MAX_TOMBSTONES: usize = 1024;

/// One of crimux's records, decoded once per change rather than once per list.
#[derive(Clone, Debug)]
pub(crate) enum Record {
    Sandbox(Arc<SandboxRecord>),
    Container(Arc<ContainerRecord>),
}

/// One object as last read: its record (`None`: gone or not crimux's, a tombstone) and
/// the ticket of the read that saw it.
#[derive(Debug)]
struct Entry {
    record: Option<Record>,
    ticket: u64,
}

#[derive(Debug, Default)]
struct Mirror {
    /// Tickets and marks share this counter, so their order is comparable.
    counter: u64,
    /// Bumped whenever the event stream is (re)subscribed or lost.
    epoch: u64,
    subscribed: bool,
    /// The entries mirror containerd (apart from dirty objects).
    warm: bool,
    /// By object id, so lists come out in containerd's order.
    entries: BTreeMap<String, Entry>,
    /// Objects to read again before the mirror is used, with the counter at their mark.
    dirty: HashMap<String, u64>,
    /// How many entries are tombstones.
    tombstones: usize,
}

impl Mirror {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Keeps what a read with `ticket` saw, unless a newer read already answered.
    fn apply(&mut self, id: &str, record: Option<Record>, ticket: u64) {
        match self.entries.get(id) {
            Some(e) if e.ticket > ticket => {}
            _ => {
                let gone = record.is_none();
                let old = self
                    .entries
                    .insert(id.to_string(), Entry { record, ticket });
                if old.is_some_and(|e| e.record.is_none()) {
                    self.tombstones = self.tombstones.saturating_sub(1);
                }
                if gone {
                    self.tombstones += 1;
                }
            }
        }
        if self.dirty.get(id).is_some_and(|mark| *mark < ticket) {
            self.dirty.remove(id);
        }
    }

    fn tickets_for_dirty(&mut self) -> Vec<(String, u64)> {
        let ids: Vec<String> = self.dirty.keys().cloned().collect();
        ids.into_iter().map(|id| (id, self.next())).collect()
    }
}

/// What a list must do before it can answer from the mirror.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Cold: list every crimux object with this ticket, then read the dirty ones.
    Resync { ticket: u64, epoch: u64 },
    /// Warm: read only these objects again, each with its ticket.
    Refresh(Vec<(String, u64)>),
}

/// The mirror of one backend's records; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct RecordCache {
    mirror: Mutex<Mirror>,
}

/// Marks its object when dropped: see [`RecordCache::mark_on_drop`].
#[must_use = "the mark happens when the guard is dropped"]
pub(crate) struct MarkOnDrop<'a> {
    cache: &'a RecordCache,
    id: &'a str,
}

impl Drop for MarkOnDrop<'_> {
    fn drop(&mut self) {
        self.cache.mark(self.id);
    }
}

impl RecordCache {
    fn lock(&self) -> MutexGuard<'_, Mirror> {
        // Every update leaves the maps consistent, so a poisoned lock is still usable.
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Object `id` changed (or may have): read it again before the next answer.
    pub(crate) fn mark(&self, id: &str) {
        let mut m = self.lock();
        let mark = m.next();
        m.dirty.insert(id.to_string(), mark);
    }

    /// A guard to hold across a write to object `id`: it marks the object once the write
    /// has returned, or when the write's future is dropped before it did (the request may
    /// have reached containerd all the same).
    pub(crate) fn mark_on_drop<'a>(&'a self, id: &'a str) -> MarkOnDrop<'a> {
        MarkOnDrop { cache: self, id }
    }

    /// The event stream is subscribed: a resync from now on makes the mirror trustworthy.
    pub(crate) fn stream_up(&self) {
        let mut m = self.lock();
        m.epoch += 1;
        m.subscribed = true;
        m.warm = false;
    }

    /// The event stream ended or failed: changes may go unseen until it is back.
    pub(crate) fn stream_down(&self) {
        let mut m = self.lock();
        m.epoch += 1;
        m.subscribed = false;
        m.warm = false;
    }

    /// Whether lists answer from the mirror.
    pub(crate) fn is_warm(&self) -> bool {
        self.lock().warm
    }

    /// What the next list must read first.
    pub(crate) fn plan(&self) -> Plan {
        let mut m = self.lock();
        if !m.warm || m.tombstones > MAX_TOMBSTONES {
            let ticket = m.next();
            return Plan::Resync {
                ticket,
                epoch: m.epoch,
            };
        }
        Plan::Refresh(m.tickets_for_dirty())
    }

    /// Tickets for reading the dirty objects again (after a resync).
    pub(crate) fn dirty_tickets(&self) -> Vec<(String, u64)> {
        self.lock().tickets_for_dirty()
    }

    /// Applies a full list issued with `ticket` while the stream was at `epoch` (objects
    /// that are not crimux records are left out of `listed`). The mirror is warm
    /// afterwards if the stream was subscribed all along.
    pub(crate) fn finish_resync(&self, ticket: u64, epoch: u64, listed: Vec<(String, Record)>) {
        let mut m = self.lock();
        let listed_ids: HashSet<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
        // Entries read before this list and not in it are gone (tombstones too).
        m.entries
            .retain(|id, e| e.ticket > ticket || listed_ids.contains(id.as_str()));
        for (id, record) in listed {
            m.apply(&id, Some(record), ticket);
        }
        // Marks older than the list are answered by it; newer ones stay dirty.
        m.dirty.retain(|_, mark| *mark > ticket);
        m.tombstones = m.entries.values().filter(|e| e.record.is_none()).count();
        if m.subscribed && m.epoch == epoch {
            m.warm = true;
        }
    }

    /// Applies one read issued with `ticket` (`None`: no such crimux object).
    pub(crate) fn apply(&self, id: &str, record: Option<Record>, ticket: u64) {
        self.lock().apply(id, record, ticket);
    }

    /// Every record the mirror holds, in id order.
    pub(crate) fn snapshot(&self) -> Vec<Record> {
        self.lock()
            .entries
            .values()
            .filter_map(|e| e.record.clone())
            .collect()
    }
}

/// The crimux record an object carries: by its kind label, the matching extension's JSON.
/// `None` for anyone else's object, and for an unreadable record (skipped with a warning:
/// it cannot be shown, but remove still works on its id).
pub(crate) fn classify(backend: &str, c: &Container) -> Option<Record> {
    let json = |key: &str| {
        c.extensions
            .get(key)
            .map(|a| a.value.as_slice())
            .unwrap_or_default()
    };
    let decoded = match c.labels.get(KIND_LABEL).map(String::as_str) {
        Some(KIND_SANDBOX) => SandboxRecord::decode(&c.id, json(SANDBOX_EXTENSION))
            .map(|r| Record::Sandbox(Arc::new(r))),
        Some(KIND_CONTAINER) => ContainerRecord::decode(&c.id, json(CONTAINER_EXTENSION))
            .map(|r| Record::Container(Arc::new(r))),
        _ => return None,
    };
    match decoded {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(backend, object = %c.id, %e, "skipping an unreadable record");
            None
        }
    }
}

/// Reads one object again: its record, `None` when it is gone or not crimux's.
async fn read(inner: &Inner, id: &str) -> Result<Option<Record>> {
    match object::get(inner, id).await {
        Ok(c) => Ok(classify(&inner.name, &c)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every sandbox and container record of the backend: from the mirror once it is warm
/// (after reading the dirty objects again), else from one full Containers.List that also
/// refills it.
pub(crate) async fn records(inner: &Inner) -> Result<Vec<Record>> {
    let dirty = match inner.records.plan() {
        Plan::Resync { ticket, epoch } => {
            let kinds: [&[(&str, &str)]; 2] = [
                &[(KIND_LABEL, KIND_SANDBOX)],
                &[(KIND_LABEL, KIND_CONTAINER)],
            ];
            let listed = object::list_objects(inner, &kinds)
                .await?
                .iter()
                .filter_map(|c| classify(&inner.name, c).map(|r| (c.id.clone(), r)))
                .collect();
            inner.records.finish_resync(ticket, epoch, listed);
            inner.records.dirty_tickets()
        }
        Plan::Refresh(dirty) => dirty,
    };
    let reads = join_all(dirty.iter().map(|(id, _)| read(inner, id))).await;
    for ((id, ticket), found) in dirty.iter().zip(reads) {
        // On failure the object stays dirty: the next list asks again, and this one fails
        // as a Containers.List would.
        inner.records.apply(id, found?, *ticket);
    }
    Ok(inner.records.snapshot())
}

/// Every sandbox record of the backend (see [`records`]).
pub(crate) async fn sandboxes(inner: &Inner) -> Result<Vec<Arc<SandboxRecord>>> {
    Ok(records(inner)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Record::Sandbox(s) => Some(s),
            Record::Container(_) => None,
        })
        .collect())
}

/// Every container record of the backend (see [`records`]).
pub(crate) async fn containers(inner: &Inner) -> Result<Vec<Arc<ContainerRecord>>> {
    Ok(records(inner)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Record::Container(c) => Some(c),
            Record::Sandbox(_) => None,
        })
        .collect())
}

#[cfg(test)]
#[path = "record_cache_tests.rs"]
mod tests;
