//! An in-memory mirror of the backend's task states, so ListPodSandbox and ListContainers
//! need not call containerd's Tasks.List (which, on containerd 1.6, asks every shim for its
//! state: tens of milliseconds with fifty pods).
//!
//! How it stays right:
//! - **Marks.** Every change crimux makes to a task (create, start, kill, wait, delete)
//!   and every task event containerd reports (the monitor subscribes to `/tasks/*`) marks
//!   that task *dirty*. A list first asks containerd for each dirty task's state
//!   (Tasks.Get, one task), so a state is never stale once its event was received or
//!   crimux's own call returned.
//! - **Resyncs.** The mirror is trusted only while the event stream is known to be
//!   subscribed and a full Tasks.List has completed since. When the stream ends or fails,
//!   the mirror turns cold: every list then does the full Tasks.List (the old, slow path)
//!   until a resync started after the stream came back completes.
//! - **Tickets.** Reads and writes race (a list's Tasks.List may answer after a Tasks.Get
//!   that started later), so every read takes a ticket from one counter before it is
//!   issued, and an entry is only overwritten by a read with a newer ticket. A task that
//!   is gone leaves a tombstone carrying its ticket, so an older read cannot bring it
//!   back; a resync drops the tombstones older than itself.
//!
//! Architecture Invariant: pure bookkeeping under a std mutex; the containerd calls are in
//! `task.rs`, never made with the lock held.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::task::TaskState;

/// One task as last read: its state (`None`: no task, a tombstone) and the ticket of the
/// read that saw it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    state: Option<TaskState>,
    ticket: u64,
}

#[derive(Debug, Default)]
struct Mirror {
    /// Tickets and marks share this counter, so their order is comparable.
    counter: u64,
    /// Bumped whenever the event stream is (re)subscribed or lost.
    epoch: u64,
    subscribed: bool,
    /// The entries mirror containerd (apart from dirty tasks).
    warm: bool,
    entries: HashMap<String, Entry>,
    /// Tasks to read again before the mirror is used, with the counter at their mark.
    dirty: HashMap<String, u64>,
}

impl Mirror {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Keeps what a read with `ticket` saw, unless a newer read already answered.
    fn apply(&mut self, id: &str, state: Option<TaskState>, ticket: u64) {
        match self.entries.get(id) {
            Some(e) if e.ticket > ticket => {}
            _ => {
                self.entries.insert(id.to_string(), Entry { state, ticket });
            }
        }
        if self.dirty.get(id).is_some_and(|mark| *mark < ticket) {
            self.dirty.remove(id);
        }
    }
}

/// What a list must do before it can answer from the mirror.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Cold: list every task (Tasks.List) with this ticket, then refresh the dirty ones.
    Resync { ticket: u64, epoch: u64 },
    /// Warm: read only these tasks again (Tasks.Get), each with its ticket.
    Refresh(Vec<(String, u64)>),
}

/// The mirror of one backend's tasks; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct TaskCache {
    mirror: Mutex<Mirror>,
}

impl TaskCache {
    fn lock(&self) -> MutexGuard<'_, Mirror> {
        // Every update leaves the maps consistent, so a poisoned lock is still usable.
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Task `id` changed (or may have): read it again before the next answer.
    pub(crate) fn mark(&self, id: &str) {
        let mut m = self.lock();
        let mark = m.next();
        m.dirty.insert(id.to_string(), mark);
    }

    /// The event stream is subscribed (an event arrived on it): a resync from now on
    /// makes the mirror trustworthy.
    pub(crate) fn stream_up(&self) {
        let mut m = self.lock();
        m.epoch += 1;
        m.subscribed = true;
        m.warm = false;
    }

    /// The event stream ended or failed: events may be lost until it is back.
    pub(crate) fn stream_down(&self) {
        let mut m = self.lock();
        m.epoch += 1;
        m.subscribed = false;
        m.warm = false;
    }

    /// Whether lists answer from the mirror.
    #[cfg(test)]
    pub(crate) fn is_warm(&self) -> bool {
        self.lock().warm
    }

    /// What the next list must read first.
    pub(crate) fn plan(&self) -> Plan {
        let mut m = self.lock();
        if !m.warm {
            let ticket = m.next();
            return Plan::Resync {
                ticket,
                epoch: m.epoch,
            };
        }
        let ids: Vec<String> = m.dirty.keys().cloned().collect();
        Plan::Refresh(ids.into_iter().map(|id| (id, m.next())).collect())
    }

    /// Tickets for re-reading the dirty tasks (after a resync).
    pub(crate) fn dirty_tickets(&self) -> Vec<(String, u64)> {
        let mut m = self.lock();
        let ids: Vec<String> = m.dirty.keys().cloned().collect();
        ids.into_iter().map(|id| (id, m.next())).collect()
    }

    /// Applies a full Tasks.List issued with `ticket` while the stream was at `epoch`.
    /// The mirror is warm afterwards if the stream was subscribed all along.
    pub(crate) fn finish_resync(&self, ticket: u64, epoch: u64, listed: &[(String, TaskState)]) {
        let mut m = self.lock();
        let listed_ids: std::collections::HashSet<&str> =
            listed.iter().map(|(id, _)| id.as_str()).collect();
        // Entries read before this list and not in it are gone (tombstones too).
        m.entries
            .retain(|id, e| e.ticket > ticket || listed_ids.contains(id.as_str()));
        for (id, state) in listed {
            m.apply(id, Some(*state), ticket);
        }
        m.dirty.retain(|_, mark| *mark > ticket);
        if m.subscribed && m.epoch == epoch {
            m.warm = true;
        }
    }

    /// Applies one Tasks.Get issued with `ticket` (`None`: the task does not exist).
    pub(crate) fn apply(&self, id: &str, state: Option<TaskState>, ticket: u64) {
        self.lock().apply(id, state, ticket);
    }

    /// Every task the mirror holds, by container id.
    pub(crate) fn snapshot(&self) -> HashMap<String, TaskState> {
        self.lock()
            .entries
            .iter()
            .filter_map(|(id, e)| e.state.map(|s| (id.clone(), s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::task::TaskStatus;

    fn st(status: TaskStatus) -> TaskState {
        TaskState {
            status,
            pid: 1,
            exit: None,
        }
    }

    fn resync(c: &TaskCache, listed: &[(&str, TaskStatus)]) {
        let Plan::Resync { ticket, epoch } = c.plan() else {
            panic!("cold cache must resync");
        };
        let listed: Vec<(String, TaskState)> = listed
            .iter()
            .map(|(i, s)| (i.to_string(), st(*s)))
            .collect();
        c.finish_resync(ticket, epoch, &listed);
    }

    fn status(c: &TaskCache, id: &str) -> Option<TaskStatus> {
        c.snapshot().get(id).map(|s| s.status)
    }

    #[test]
    fn cold_until_a_resync_after_the_stream_is_up() {
        let c = TaskCache::default();
        resync(&c, &[("a", TaskStatus::Running)]);
        assert!(!c.is_warm(), "no stream: every list resyncs");
        c.stream_up();
        resync(&c, &[("a", TaskStatus::Running)]);
        assert!(c.is_warm());
        assert!(matches!(c.plan(), Plan::Refresh(ids) if ids.is_empty()));
        c.stream_down();
        assert!(!c.is_warm());
        // A resync that began before the stream came back does not warm the mirror.
        let Plan::Resync { ticket, epoch } = c.plan() else {
            panic!("cold");
        };
        c.stream_up();
        c.finish_resync(ticket, epoch, &[]);
        assert!(!c.is_warm());
        resync(&c, &[]);
        assert!(c.is_warm());
        assert_eq!(status(&c, "a"), None, "gone from the list, gone here");
    }

    #[test]
    fn marks_are_read_again_and_older_reads_never_win() {
        let c = TaskCache::default();
        c.stream_up();
        resync(&c, &[("a", TaskStatus::Running)]);
        c.mark("a");
        let Plan::Refresh(dirty) = c.plan() else {
            panic!("warm");
        };
        assert_eq!(dirty.len(), 1);
        let (_, older) = dirty[0].clone();
        // A newer read (a later list's Get) already saw it stopped...
        c.mark("a");
        let Plan::Refresh(dirty) = c.plan() else {
            panic!("warm");
        };
        c.apply("a", Some(st(TaskStatus::Stopped)), dirty[0].1);
        // ...so the older Get's answer is ignored.
        c.apply("a", Some(st(TaskStatus::Running)), older);
        assert_eq!(status(&c, "a"), Some(TaskStatus::Stopped));
        assert!(matches!(c.plan(), Plan::Refresh(ids) if ids.is_empty()));

        // A deleted task leaves a tombstone an older resync cannot undo.
        c.stream_down();
        c.stream_up();
        let Plan::Resync { ticket, epoch } = c.plan() else {
            panic!("cold");
        };
        c.mark("a");
        let tickets = c.dirty_tickets();
        c.apply("a", None, tickets[0].1);
        c.finish_resync(ticket, epoch, &[("a".to_string(), st(TaskStatus::Running))]);
        assert_eq!(status(&c, "a"), None);
        assert!(c.is_warm());
        // A mark made while a read was in flight keeps the task dirty.
        c.mark("b");
        let Plan::Refresh(dirty) = c.plan() else {
            panic!("warm");
        };
        c.mark("b");
        c.apply("b", Some(st(TaskStatus::Created)), dirty[0].1);
        assert!(matches!(c.plan(), Plan::Refresh(ids) if ids.len() == 1));
    }
}
