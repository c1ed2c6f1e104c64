//! Attach stdin of containers created with `stdin` and no terminal, on a real containerd
//! 1.6 with runc: such a task gets FIFO stdio and crimux runs `crimux-log` on it itself,
//! detached (containerd's shim drops stdin under binary logging). Needs root, CNI plugins
//! in /usr/lib/cni, umoci, skopeo and busybox-static; every test runs its own daemons.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::containers::{new_container_id, ContainerWorld};
use common::streams::{client, read_until, run_pod, start, wait_state, wait_until};
use crimux_core::status::ContainerState;
use crimux_core::{ContainerBackend, ContainerId, StreamingBackend};
use tokio::io::AsyncWriteExt;

fn container_dir(world: &ContainerWorld, id: &ContainerId) -> PathBuf {
    world.pods.state_dir.join("containers").join(id.as_str())
}

/// The pid the detached logger wrote.
fn logger_pid(world: &ContainerWorld, id: &ContainerId) -> i32 {
    let pidfile = container_dir(world, id).join("log.pid");
    std::fs::read_to_string(&pidfile)
        .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()))
        .trim()
        .parse()
        .expect("pid")
}

/// Field `n` (as man 5 proc numbers them) of /proc/<pid>/stat.
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(n - 3).map(str::to_string)
}

/// Live processes whose command line names container `id` (its loggers: their FIFO and
/// pidfile arguments are under the container's directory). Zombies have no command line.
fn loggers_of(id: &ContainerId) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains("crimux-log") && cmdline.contains(id.as_str()))
                .then(|| format!("{}: {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// Files in the container's directory that are FIFOs.
fn fifos_in(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_fifo()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

async fn remove_leaves_nothing(world: &ContainerWorld, id: &ContainerId) {
    world
        .backend
        .stop_container(id, Duration::ZERO)
        .await
        .expect("stop");
    world.backend.remove_container(id).await.expect("remove");
    assert_eq!(loggers_of(id), Vec::<String>::new(), "logger left behind");
    assert_eq!(world.leftovers(id).await, Vec::<String>::new());
    assert_eq!(fifos_in(&container_dir(world, id)), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_feeds_stdin_without_a_terminal_and_the_logger_is_detached() {
    let world = ContainerWorld::new().await;
    let pod = run_pod(&world, world.pod("stdin")).await;
    let mut reader = world.container("reader", "while read l; do echo got:$l; done");
    reader.stdin = true;

    // Started by a backend that is then dropped: crimux going away.
    let id = {
        let gone = world.reconnect().await;
        let id = new_container_id();
        gone.create_container(&id, &pod.0, &reader, &pod.1)
            .await
            .expect("create");
        gone.start_container(&id).await.expect("start");
        id
    };
    wait_state(&world, &id, ContainerState::Running).await;
    let dir = container_dir(&world, &id);
    let mut fifos = fifos_in(&dir);
    fifos.sort();
    assert_eq!(fifos, ["stderr", "stdin", "stdout"]);
    // The logger is nobody's child here and leads its own session.
    let pid = logger_pid(&world, &id);
    assert_eq!(stat_field(pid, 6), Some(pid.to_string()), "session leader");
    assert_ne!(stat_field(pid, 4), Some(std::process::id().to_string()));
    assert_eq!(loggers_of(&id).len(), 1, "{:?}", loggers_of(&id));

    // Two attaches one after the other: the first leaving does not end the stdin.
    let log = world.log_file(&pod.1, &reader);
    for word in ["one", "two"] {
        let (io, mut ends) = client((true, true, true, false));
        let session = {
            let backend = world.backend.clone();
            let id = id.clone();
            tokio::spawn(async move { backend.attach(&id, io).await })
        };
        let (mut stdin, mut out) = (ends.stdin.take().unwrap(), ends.stdout.take().unwrap());
        stdin
            .write_all(format!("{word}\n").as_bytes())
            .await
            .expect("write");
        let mut seen = Vec::new();
        read_until(
            &mut out,
            &mut seen,
            &format!("got:{word}\n"),
            Duration::from_secs(10),
        )
        .await;
        drop(stdin);
        session.abort();
        let _ = session.await;
    }
    wait_until(
        "both lines in the CRI log",
        Duration::from_secs(10),
        async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains(" stdout F got:one\n") && text.contains(" stdout F got:two\n")
        },
    )
    .await;

    // ReopenContainerLog still reaches the logger (SIGUSR1 through its pidfile).
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    world
        .backend
        .reopen_container_log(&id)
        .await
        .expect("reopen");
    let (io, mut ends) = client((true, true, false, false));
    let session = world.backend.attach(&id, io);
    let driver = async {
        let mut stdin = ends.stdin.take().unwrap();
        stdin.write_all(b"three\n").await.expect("write");
        wait_until("the reopened log", Duration::from_secs(10), async || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(" stdout F got:three\n")
        })
        .await;
    };
    tokio::select! {
        ended = session => panic!("attach ended early: {ended:?}"),
        () = driver => {}
    }
    assert!(!std::fs::read_to_string(&rotated)
        .expect("rotated")
        .contains("three"));

    remove_leaves_nothing(&world, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_once_ends_cat_at_the_clients_end_of_file() {
    let world = ContainerWorld::new().await;
    let pod = run_pod(&world, world.pod("once")).await;
    let mut cat = world.container("cat", "exec cat");
    cat.stdin = true;
    cat.stdin_once = true;
    let id = start(&world, &pod, &cat).await;

    let (io, mut ends) = client((true, true, true, false));
    let session = world.backend.attach(&id, io);
    let driver = async {
        let (mut stdin, mut out) = (ends.stdin.take().unwrap(), ends.stdout.take().unwrap());
        stdin.write_all(b"hello\n").await.expect("write");
        let mut seen = Vec::new();
        read_until(&mut out, &mut seen, "hello\n", Duration::from_secs(10)).await;
        // The client's end-of-file: CloseIO, cat sees its end and exits.
        drop(stdin);
    };
    let (ended, ()) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(session, driver)
    })
    .await
    .expect("attach ends when cat exits");
    ended.expect("attach");
    wait_state(&world, &id, ContainerState::Exited).await;
    let status = world
        .backend
        .container_status(&id, false)
        .await
        .expect("status");
    assert_eq!(status.exit_code, 0, "{status:?}");
    let text = std::fs::read_to_string(world.log_file(&pod.1, &cat)).expect("log");
    assert!(text.contains(" stdout F hello\n"), "{text}");
    // The process's end is the logger's end.
    wait_until(
        "the logger exits with cat",
        Duration::from_secs(10),
        async || loggers_of(&id).is_empty(),
    )
    .await;
    assert!(!container_dir(&world, &id).join("log.pid").exists());

    remove_leaves_nothing(&world, &id).await;
}

/// Without a log path (critest's attach container) the output still needs a reader, or
/// `runc create` waits for ever on its own output pipe: it goes to a logger writing
/// /dev/null, which still serves attach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_without_a_log_path_still_starts_and_attaches() {
    let world = ContainerWorld::new().await;
    let pod = run_pod(&world, world.pod("nolog")).await;
    let mut cat = world.container("cat", "exec cat");
    cat.stdin = true;
    cat.stdin_once = true;
    cat.log_path = String::new();
    let id = tokio::time::timeout(Duration::from_secs(60), start(&world, &pod, &cat))
        .await
        .expect("the container starts");

    let (io, mut ends) = client((true, true, true, false));
    let session = world.backend.attach(&id, io);
    let driver = async {
        let (mut stdin, mut out) = (ends.stdin.take().unwrap(), ends.stdout.take().unwrap());
        stdin.write_all(b"no log\n").await.expect("write");
        let mut seen = Vec::new();
        read_until(&mut out, &mut seen, "no log\n", Duration::from_secs(10)).await;
        drop(stdin);
    };
    let (ended, ()) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(session, driver)
    })
    .await
    .expect("attach ends when cat exits");
    ended.expect("attach");
    wait_state(&world, &id, ContainerState::Exited).await;
    remove_leaves_nothing(&world, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_ends_the_logger_and_removes_the_fifos() {
    let world = ContainerWorld::new().await;
    let pod = run_pod(&world, world.pod("broken")).await;
    let mut broken = world.container("broken", "unused");
    broken.command = vec!["/no/such/binary".into()];
    broken.stdin = true;
    let id = new_container_id();
    world
        .backend
        .create_container(&id, &pod.0, &broken, &pod.1)
        .await
        .expect("create");
    world
        .backend
        .start_container(&id)
        .await
        .expect_err("no such binary");
    assert_eq!(loggers_of(&id), Vec::<String>::new(), "logger left behind");
    let dir = container_dir(&world, &id);
    assert_eq!(fifos_in(&dir), Vec::<String>::new());
    assert!(!dir.join("log.pid").exists());
    let status = world
        .backend
        .container_status(&id, false)
        .await
        .expect("status");
    assert_eq!(status.summary.state, ContainerState::Exited);
    assert_eq!(status.reason, "StartError", "{status:?}");
    world.backend.remove_container(&id).await.expect("remove");
    assert_eq!(world.leftovers(&id).await, Vec::<String>::new());
}
