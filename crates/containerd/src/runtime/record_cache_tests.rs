//! The record mirror's bookkeeping: when it is trusted, and that no interleaving of reads,
//! writes and resyncs leaves a stale record behind.

use std::collections::HashMap;
use std::path::PathBuf;

use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::ResolvedUser;

use super::*;
use crate::container::record::CONTAINER_TYPE_URL;
use crate::sandbox::record::{SandboxFiles, SANDBOX_TYPE_URL};

fn sandbox(id: &str) -> Record {
    Record::Sandbox(Arc::new(SandboxRecord {
        id: id.into(),
        config: SandboxConfig::default(),
        created_at: 1,
        netns_path: None,
        ips: Vec::new(),
        runtime_type: String::new(),
        files: SandboxFiles {
            hostname: PathBuf::new(),
            hosts: PathBuf::new(),
            resolv_conf: PathBuf::new(),
            shm: None,
        },
        image_id: String::new(),
    }))
}

fn container(id: &str, started_at: i64) -> Record {
    Record::Container(Arc::new(ContainerRecord {
        id: id.into(),
        sandbox_id: "s".into(),
        config: Default::default(),
        created_at: 1,
        started_at,
        image_name: String::new(),
        image_id: String::new(),
        log_path: String::new(),
        user: ResolvedUser::default(),
        stop_signal: None,
        oom_killed: false,
        start_failure: None,
        resources: None,
        windows_resources: None,
        runtime_type: String::new(),
    }))
}

fn id_of(r: &Record) -> String {
    match r {
        Record::Sandbox(s) => s.id.as_str().to_string(),
        Record::Container(c) => c.id.as_str().to_string(),
    }
}

/// What a list would answer: id → `started_at` (sandboxes: -1).
fn listed(c: &RecordCache) -> Vec<(String, i64)> {
    c.snapshot()
        .iter()
        .map(|r| {
            let started = match r {
                Record::Sandbox(_) => -1,
                Record::Container(c) => c.started_at,
            };
            (id_of(r), started)
        })
        .collect()
}

fn resync(c: &RecordCache, objects: Vec<Record>) {
    let Plan::Resync { ticket, epoch } = c.plan() else {
        panic!("a cold mirror must resync");
    };
    c.finish_resync(
        ticket,
        epoch,
        objects.into_iter().map(|r| (id_of(&r), r)).collect(),
    );
}

fn refresh(c: &RecordCache) -> Vec<(String, u64)> {
    match c.plan() {
        Plan::Refresh(dirty) => dirty,
        Plan::Resync { .. } => panic!("a warm mirror refreshes"),
    }
}

#[test]
fn trusted_only_after_a_resync_while_the_stream_is_up() {
    let c = RecordCache::default();
    resync(&c, vec![sandbox("s")]);
    assert!(!c.is_warm(), "no stream: every list reads everything");
    c.stream_up();
    resync(&c, vec![sandbox("s"), container("a", 0)]);
    assert!(c.is_warm());
    assert!(refresh(&c).is_empty(), "warm and clean: no containerd call");
    assert_eq!(listed(&c), [("a".into(), 0), ("s".into(), -1)]);

    // Losing the stream invalidates; a resync begun before it came back does not count.
    c.stream_down();
    assert!(!c.is_warm());
    let Plan::Resync { ticket, epoch } = c.plan() else {
        panic!("cold");
    };
    c.stream_up();
    c.finish_resync(ticket, epoch, Vec::new());
    assert!(!c.is_warm());
    // A stream lost and regained while a resync is in flight also voids it.
    let Plan::Resync { ticket, epoch } = c.plan() else {
        panic!("cold");
    };
    c.stream_down();
    c.stream_up();
    c.finish_resync(ticket, epoch, Vec::new());
    assert!(!c.is_warm());
    resync(&c, vec![sandbox("s")]);
    assert!(c.is_warm());
    assert_eq!(
        listed(&c),
        [("s".into(), -1)],
        "gone from the list, gone here"
    );
}

#[test]
fn a_create_racing_a_refill_is_not_lost() {
    let c = RecordCache::default();
    c.stream_up();
    // The resync's List is issued, then a create lands (and marks) before it answers
    // without the new object.
    let Plan::Resync { ticket, epoch } = c.plan() else {
        panic!("cold");
    };
    c.mark("new");
    c.finish_resync(ticket, epoch, vec![("old".into(), container("old", 0))]);
    let dirty = c.dirty_tickets();
    assert_eq!(dirty.len(), 1, "the create stays dirty: {dirty:?}");
    c.apply("new", Some(container("new", 0)), dirty[0].1);
    assert_eq!(listed(&c), [("new".into(), 0), ("old".into(), 0)]);

    // A mark older than the List is answered by it.
    c.stream_down();
    c.stream_up();
    c.mark("old");
    resync(&c, vec![container("old", 5)]);
    assert!(c.dirty_tickets().is_empty());
    assert_eq!(
        listed(&c),
        [("old".into(), 5)],
        "and `new` was deleted meanwhile"
    );
}

#[test]
fn older_reads_never_win() {
    let c = RecordCache::default();
    c.stream_up();
    resync(&c, vec![container("a", 0)]);
    c.mark("a");
    let older = refresh(&c)[0].1;
    // A write lands while that read is in flight, and a later list reads it first.
    c.mark("a");
    let newer = refresh(&c)[0].1;
    c.apply("a", Some(container("a", 7)), newer);
    c.apply("a", Some(container("a", 0)), older);
    assert_eq!(listed(&c), [("a".into(), 7)]);
    assert!(refresh(&c).is_empty());

    // A read that raced a newer mark leaves the object dirty.
    c.mark("a");
    let ticket = refresh(&c)[0].1;
    c.mark("a");
    c.apply("a", Some(container("a", 7)), ticket);
    assert_eq!(refresh(&c).len(), 1, "read again by the next list");
}

#[test]
fn a_delete_leaves_a_tombstone_an_older_resync_cannot_undo() {
    let c = RecordCache::default();
    c.stream_up();
    resync(&c, vec![container("a", 0), sandbox("s")]);
    c.stream_down();
    c.stream_up();
    let Plan::Resync { ticket, epoch } = c.plan() else {
        panic!("cold");
    };
    // Deleted (the event marks it) and read back as absent before the List answers.
    c.mark("a");
    let dirty = c.dirty_tickets();
    c.apply("a", None, dirty[0].1);
    c.finish_resync(
        ticket,
        epoch,
        vec![("a".into(), container("a", 0)), ("s".into(), sandbox("s"))],
    );
    assert!(c.is_warm());
    assert_eq!(listed(&c), [("s".into(), -1)]);
    // The tombstone itself goes with the next resync that does not list the object.
    c.stream_down();
    c.stream_up();
    resync(&c, vec![sandbox("s")]);
    assert!(!c.lock().entries.contains_key("a"));
}

#[test]
fn a_dropped_write_still_marks() {
    let c = RecordCache::default();
    c.stream_up();
    resync(&c, Vec::new());
    {
        let _guard = c.mark_on_drop("x");
        assert!(refresh(&c).is_empty(), "not yet: the write is in flight");
    }
    assert_eq!(refresh(&c).len(), 1);
}

fn object(id: &str, kind: Option<&str>, ext: Option<(&str, &str, Vec<u8>)>) -> Container {
    Container {
        id: id.into(),
        labels: kind
            .map(|k| HashMap::from([(KIND_LABEL.to_string(), k.to_string())]))
            .unwrap_or_default(),
        extensions: ext
            .map(|(key, url, value)| {
                HashMap::from([(
                    key.to_string(),
                    prost_types::Any {
                        type_url: url.into(),
                        value,
                    },
                )])
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

#[test]
fn objects_are_classified_by_kind_and_record() {
    let Record::Sandbox(s) = sandbox("s") else {
        panic!("sandbox");
    };
    let Record::Container(k) = container("k", 3) else {
        panic!("container");
    };
    let s_ext = s.extension().expect("json");
    let k_ext = k.extension().expect("json");
    let kind = |o: &Container| match classify("b", o) {
        Some(Record::Sandbox(_)) => "sandbox",
        Some(Record::Container(_)) => "container",
        None => "none",
    };
    let cases = [
        (
            object("s", Some(KIND_SANDBOX), Some(s_ext.clone())),
            "sandbox",
        ),
        (
            object("k", Some(KIND_CONTAINER), Some(k_ext.clone())),
            "container",
        ),
        // Labels decide: a container record on an unlabelled object is not ours.
        (object("x", None, Some(k_ext.clone())), "none"),
        (object("y", Some("other"), Some(k_ext.clone())), "none"),
        // The kind's own extension, readable, is required.
        (object("z", Some(KIND_SANDBOX), Some(k_ext)), "none"),
        (object("z", Some(KIND_CONTAINER), None), "none"),
        (
            object(
                "z",
                Some(KIND_SANDBOX),
                Some((SANDBOX_EXTENSION, SANDBOX_TYPE_URL, b"{".to_vec())),
            ),
            "none",
        ),
        (
            object(
                "z",
                Some(KIND_CONTAINER),
                Some((CONTAINER_EXTENSION, CONTAINER_TYPE_URL, b"[]".to_vec())),
            ),
            "none",
        ),
    ];
    for (o, want) in cases {
        assert_eq!(kind(&o), want, "{o:?}");
    }
}

#[test]
fn piled_up_tombstones_force_a_resync_that_drops_them() {
    let c = RecordCache::default();
    c.stream_up();
    resync(&c, vec![sandbox("s")]);
    let bury = |id: &str, record: Option<Record>| {
        c.mark(id);
        let ticket = refresh(&c)[0].1;
        c.apply(id, record, ticket);
    };
    for i in 0..MAX_TOMBSTONES {
        bury(&format!("gone-{i}"), None);
    }
    // Overwriting a tombstone with a record, or with another tombstone, keeps the count.
    bury("gone-0", Some(container("gone-0", 0)));
    bury("gone-0", None);
    assert_eq!(c.lock().tombstones, MAX_TOMBSTONES);
    assert!(
        refresh(&c).is_empty(),
        "at the limit: still answered from memory"
    );
    bury("one-more", None);
    // Still warm, but the next list reads everything once, and that clears them.
    assert!(c.is_warm());
    resync(&c, vec![sandbox("s")]);
    assert!(c.is_warm());
    assert_eq!(c.lock().tombstones, 0);
    assert_eq!(c.lock().entries.len(), 1);
    assert!(refresh(&c).is_empty());
}
