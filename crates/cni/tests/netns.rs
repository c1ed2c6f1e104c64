//! Pinned network namespaces against the real kernel (needs root).
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;

use common::{current_netns, mounts, mounts_under, unmount_dir, NsDir};
use crimux_cni::NetNs;

#[test]
fn create_enter_and_remove_a_namespace() {
    let dir = NsDir::new();
    let host_ns = current_netns();
    let ns = NetNs::create(dir.path(), "pod-a").expect("create netns (are we root?)");
    let path = ns.path().to_path_buf();
    assert_eq!(path, dir.path().join("pod-a"));
    assert!(path.is_file());
    let here: Vec<_> = mounts().into_iter().filter(|(p, _)| *p == path).collect();
    assert_eq!(here.len(), 1, "{here:?}");
    assert_eq!(here[0].1, "nsfs");

    // The caller's namespace never changed; inside, only `lo` exists, and it is up (a pod
    // reaches its own 127.0.0.1 whatever the CNI config lists).
    assert_eq!(current_netns(), host_ns);
    let inside = ns.run_in(current_netns).unwrap();
    assert_ne!(inside, host_ns);
    let links = ns
        .run_in(|| Command::new("ip").args(["-o", "link", "show"]).output())
        .unwrap()
        .expect("run ip");
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(names, vec!["lo"], "{links}");
    assert!(links.contains("<LOOPBACK,UP,LOWER_UP>"), "{links}");
    // The same namespace when entered twice, and through `open`.
    let opened = NetNs::open(&path).unwrap();
    assert_eq!(opened.run_in(current_netns).unwrap(), inside);

    // A second create of the same name refuses.
    let again = NetNs::create(dir.path(), "pod-a").unwrap_err();
    assert!(
        matches!(again, crimux_core::Error::AlreadyExists(_)),
        "{again:?}"
    );

    ns.remove().unwrap();
    assert!(!path.exists());
    assert!(mounts().iter().all(|(p, _)| *p != path));
    ns.remove().expect("remove is idempotent");
    let gone = NetNs::open(&path).unwrap_err();
    assert!(gone.is_not_found(), "{gone:?}");
    assert!(ns.run_in(|| ()).is_err());
}

#[test]
fn open_refuses_what_is_not_a_network_namespace() {
    let dir = NsDir::new();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "").unwrap();
    let err = NetNs::open(&plain).unwrap_err();
    assert!(
        matches!(err, crimux_core::Error::FailedPrecondition(_)),
        "{err:?}"
    );
    let err = NetNs::open(std::path::Path::new("/proc/self/ns/uts")).unwrap_err();
    assert!(
        matches!(err, crimux_core::Error::FailedPrecondition(_)),
        "{err:?}"
    );
    NetNs::open(std::path::Path::new("/proc/self/ns/net")).expect("the host's own netns");
    // Removing a plain leftover file (a half-removed namespace) works too.
    NetNs::at(&plain).remove().unwrap();
    assert!(!plain.exists());
    assert!(NetNs::create(dir.path(), "../escape").is_err());
}

#[test]
fn twenty_namespaces_at_once() {
    let dir = NsDir::new();
    let created: Vec<NetNs> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let path = dir.path();
                s.spawn(move || NetNs::create(path, &format!("ns-{i}")).expect("create"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut ids: Vec<String> = created
        .iter()
        .map(|ns| ns.run_in(current_netns).unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "every namespace is distinct");
    let nsfs = mounts_under(dir.path())
        .into_iter()
        .filter(|(_, t)| t == "nsfs")
        .count();
    assert_eq!(nsfs, 20);

    std::thread::scope(|s| {
        for ns in &created {
            s.spawn(move || ns.remove().expect("remove"));
        }
    });
    // Only the directory's own shared bind mount is left, and then nothing.
    let left = mounts_under(dir.path());
    assert!(left.iter().all(|(p, _)| p == dir.path()), "{left:?}");
    unmount_dir(dir.path());
    assert!(mounts_under(dir.path()).is_empty());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
