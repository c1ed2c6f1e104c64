//! Exec, attach and port-forward sessions (`StreamingBackend`) on a real containerd 1.6
//! with runc and CNI, in pods run by the sandbox code. Needs root, CNI plugins in
//! /usr/lib/cni, umoci, skopeo and busybox-static; every test runs its own daemons.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::containers::{new_container_id, new_sandbox_id, ContainerWorld};
use common::sandbox::host_network_config;
use common::streams::{
    client, exec_files, pids, read_all, read_until, run_pod, sh, start, wait_state, wait_until,
};
use crimux_containerd::ContainerdBackend;
use crimux_core::status::ContainerState;
use crimux_core::streaming::{ExecSpec, TermSize};
use crimux_core::{ContainerBackend, ContainerId, SandboxBackend, StreamingBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// Runs `cmd` with pipes, feeding `input` then end-of-file; returns (code, stdout, stderr).
async fn exec_pipes(
    backend: &ContainerdBackend,
    id: &ContainerId,
    cmd: Vec<String>,
    input: Option<&[u8]>,
) -> (i32, Vec<u8>, Vec<u8>) {
    let (io, ends) = client((input.is_some(), true, true, false));
    let feed = async move {
        if let (Some(mut w), Some(data)) = (ends.stdin, input) {
            w.write_all(data).await.expect("write stdin");
            // Dropping our end is the client's end-of-file.
        }
    };
    let spec = ExecSpec { cmd, tty: false };
    let (code, (), out, err) = tokio::join!(
        backend.exec(id, &spec, io),
        feed,
        read_all(ends.stdout),
        read_all(ends.stderr)
    );
    (code.expect("exec"), out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_stdio_exit_codes_and_a_tty() {
    let world = ContainerWorld::new().await;
    let backend = world.backend.as_ref();
    let pod = run_pod(&world, world.pod("exec")).await;
    let id = start(&world, &pod, &world.container("server", "sleep 1000")).await;
    let base = pids(&world, &id).await;

    backend.check_exec(&id).await.expect("check_exec");
    let err = backend
        .check_exec(&new_container_id())
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let created = new_container_id();
    backend
        .create_container(
            &created,
            &pod.0,
            &world.container("created", "true"),
            &pod.1,
        )
        .await
        .expect("create");
    let err = backend.check_exec(&created).await.expect_err("created");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("is not running"), "{err}");

    // stdin to stdout, ended by the client's end-of-file.
    let (code, out, err) =
        exec_pipes(backend, &id, vec!["cat".into()], Some(b"hello\nworld\n")).await;
    assert_eq!(
        (code, &out[..], &err[..]),
        (0, &b"hello\nworld\n"[..], &b""[..])
    );

    // Exit codes, and stderr apart from stdout.
    assert_eq!(
        exec_pipes(backend, &id, vec!["true".into()], None).await.0,
        0
    );
    assert_eq!(exec_pipes(backend, &id, sh("exit 42"), None).await.0, 42);
    let (code, out, err) =
        exec_pipes(backend, &id, sh("echo out; echo err >&2; exit 3"), None).await;
    assert_eq!(
        (code, &out[..], &err[..]),
        (3, &b"out\n"[..], &b"err\n"[..])
    );

    // A terminal: created at the size already queued, then resized.
    let (io, mut ends) = client((true, true, false, true));
    let resize = ends.resize.take().expect("resize");
    resize
        .send(TermSize {
            width: 100,
            height: 40,
        })
        .await
        .expect("size");
    let spec = ExecSpec {
        cmd: sh("busybox stty size; while read l; do busybox stty size; done"),
        tty: true,
    };
    let session = backend.exec(&id, &spec, io);
    let driver = async {
        let (mut stdin, mut stdout) = (ends.stdin.take().unwrap(), ends.stdout.take().unwrap());
        let mut seen = Vec::new();
        read_until(&mut stdout, &mut seen, "40 100", Duration::from_secs(10)).await;
        resize
            .send(TermSize {
                width: 120,
                height: 50,
            })
            .await
            .expect("resize");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&seen).contains("50 120") {
            assert!(
                Instant::now() < deadline,
                "resize never seen: {:?}",
                String::from_utf8_lossy(&seen)
            );
            stdin.write_all(b"\n").await.expect("newline");
            let mut buf = [0u8; 1024];
            if let Ok(n) =
                tokio::time::timeout(Duration::from_millis(300), stdout.read(&mut buf)).await
            {
                seen.extend_from_slice(&buf[..n.expect("read")]);
            }
        }
        // ^D at the start of a line: end-of-file for `read` on a terminal.
        stdin.write_all(b"\x04").await.expect("eof");
        // Closing stdin now would hang up the terminal (SIGHUP) before `read` saw the ^D.
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).await.expect("read");
        drop(stdin);
    };
    let (code, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(session, driver)
    })
    .await
    .expect("tty session ended");
    assert_eq!(code.expect("tty exec"), 0);

    let err = backend
        .exec(
            &id,
            &ExecSpec {
                cmd: vec![],
                tty: false,
            },
            client((false, true, false, false)).0,
        )
        .await
        .expect_err("empty command");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(pids(&world, &id).await, base);
    assert_eq!(exec_files(&world, &id), Vec::<String>::new());
}

/// The tail of the test containerd's log, for a failure message.
fn containerd_log(world: &ContainerWorld) -> String {
    let path = world.pods.containerd.dir.path().join("containerd.log");
    let log = std::fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_exec_sessions_at_once_and_clients_that_go_away() {
    let world = ContainerWorld::new().await;
    let backend = world.backend.as_ref();
    let pod = run_pod(&world, world.pod("many")).await;
    let id = start(&world, &pod, &world.container("server", "sleep 1000")).await;
    let base = pids(&world, &id).await;

    // 100 sessions at once.
    let t0 = Instant::now();
    let sessions = (0..100).map(|i| {
        let id = &id;
        async move {
            let (io, ends) = client((false, true, true, false));
            let spec = ExecSpec {
                cmd: vec!["echo".into(), format!("n{i}")],
                tty: false,
            };
            let (code, out, _) = tokio::join!(
                backend.exec(id, &spec, io),
                read_all(ends.stdout),
                read_all(ends.stderr)
            );
            (
                code.map_err(|e| e.to_string()),
                String::from_utf8_lossy(&out).into_owned(),
                i,
            )
        }
    });
    let results = futures::future::join_all(sessions).await;
    let took = t0.elapsed();
    for (code, out, i) in results {
        assert_eq!(
            (code.clone(), out),
            (Ok(0), format!("n{i}\n")),
            "session {i}: {code:?}\ncontainerd log:\n{}",
            containerd_log(&world)
        );
    }
    println!("100 concurrent exec sessions: {took:?}");

    // The figures: cat of 100 MB through stdout, and 1-byte echo round trips.
    throughput_and_latency(backend, &id).await;

    assert_eq!(pids(&world, &id).await, base);
    assert_eq!(exec_files(&world, &id), Vec::<String>::new());

    // A client that goes away mid-stream: the process is killed, deleted, its FIFOs gone.
    let (io, mut ends) = client((true, true, true, false));
    let spec = ExecSpec {
        cmd: vec!["cat".into()],
        tty: false,
    };
    let session = {
        let backend = world.backend.clone();
        let id = id.clone();
        tokio::spawn(async move { backend.exec(&id, &spec, io).await })
    };
    let (mut stdin, mut stdout) = (ends.stdin.take().unwrap(), ends.stdout.take().unwrap());
    stdin.write_all(b"ping\n").await.expect("write");
    let mut seen = Vec::new();
    read_until(&mut stdout, &mut seen, "ping\n", Duration::from_secs(10)).await;
    assert!(pids(&world, &id).await.len() > base.len(), "cat runs");
    assert!(
        !exec_files(&world, &id).is_empty(),
        "FIFOs exist while it runs"
    );
    session.abort();
    assert!(session.await.expect_err("aborted").is_cancelled());
    wait_until(
        "the abandoned exec is cleaned up",
        Duration::from_secs(10),
        async || pids(&world, &id).await == base && exec_files(&world, &id).is_empty(),
    )
    .await;
}

/// Prints the throughput of `cat` of 100 MB through exec stdout and the latency of a
/// 1-byte echo round trip (streaming session vs. a whole ExecSync of the same command).
async fn throughput_and_latency(backend: &ContainerdBackend, id: &ContainerId) {
    const SIZE: u64 = 100 << 20;
    let (io, mut ends) = client((false, true, false, false));
    let spec = ExecSpec {
        cmd: sh(&format!("busybox head -c {SIZE} /dev/zero | cat")),
        tty: false,
    };
    let t0 = Instant::now();
    let counting = async {
        let mut end = ends.stdout.take().unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        loop {
            let n = end.read(&mut buf).await.expect("read");
            if n == 0 {
                return total;
            }
            total += n as u64;
        }
    };
    let (code, total) = tokio::join!(backend.exec(id, &spec, io), counting);
    let took = t0.elapsed();
    assert_eq!((code.expect("cat 100 MB"), total), (0, SIZE));
    println!(
        "cat 100 MB through exec stdout: {:?} = {:.0} MB/s",
        took,
        SIZE as f64 / (1 << 20) as f64 / took.as_secs_f64()
    );

    let (io, mut ends) = client((true, true, false, false));
    let spec = ExecSpec {
        cmd: vec!["cat".into()],
        tty: false,
    };
    let rounds = 200u32;
    let pinging = async {
        let (mut stdin, mut stdout) = (ends.stdin.take().unwrap(), ends.stdout.take().unwrap());
        let mut byte = [0u8; 1];
        // One warm-up round: the process starts.
        stdin.write_all(b"x").await.expect("write");
        stdout.read_exact(&mut byte).await.expect("echo");
        let t0 = Instant::now();
        for _ in 0..rounds {
            stdin.write_all(b"x").await.expect("write");
            stdout.read_exact(&mut byte).await.expect("echo");
        }
        t0.elapsed() / rounds
    };
    let (code, rtt) = tokio::join!(backend.exec(id, &spec, io), pinging);
    assert_eq!(code.expect("cat"), 0);
    let t0 = Instant::now();
    for _ in 0..10 {
        exec_pipes(backend, id, vec!["echo".into(), "x".into()], None).await;
    }
    let session = t0.elapsed() / 10;
    let t0 = Instant::now();
    for _ in 0..10 {
        backend
            .exec_sync(id, &["echo".into(), "x".into()], None)
            .await
            .expect("exec_sync");
    }
    let sync = t0.elapsed() / 10;
    println!(
        "1-byte echo round trip in a running exec session: {rtt:?}; whole `echo x` session: \
         streaming exec {session:?}, ExecSync {sync:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_joins_the_main_process_and_the_log_keeps_going() {
    let world = ContainerWorld::new().await;
    let backend = world.backend.as_ref();
    let pod = run_pod(&world, world.pod("attach")).await;

    // A container printing periodically, created with stdin.
    let mut ticker = world.container(
        "ticker",
        "i=0; while :; do echo tick $i; echo tock $i >&2; i=$((i+1)); sleep 0.2; done",
    );
    ticker.stdin = true;
    let tick_id = start(&world, &pod, &ticker).await;
    backend.check_attach(&tick_id).await.expect("check_attach");
    let (io, mut ends) = client((false, true, true, false));
    let session = {
        let backend = world.backend.clone();
        let id = tick_id.clone();
        tokio::spawn(async move { backend.attach(&id, io).await })
    };
    let (mut out, mut err) = (ends.stdout.take().unwrap(), ends.stderr.take().unwrap());
    let (mut seen, mut seen_err) = (Vec::new(), Vec::new());
    read_until(&mut out, &mut seen, "tick", Duration::from_secs(10)).await;
    let first: u32 = String::from_utf8_lossy(&seen)
        .split("tick ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a tick number");
    let later = format!("tick {}\n", first + 3);
    read_until(&mut out, &mut seen, &later, Duration::from_secs(10)).await;
    read_until(&mut err, &mut seen_err, "tock", Duration::from_secs(10)).await;
    assert!(
        !String::from_utf8_lossy(&seen).contains("tock"),
        "stderr kept apart"
    );
    session.abort();
    let _ = session.await;
    // The CRI log has what the attached client saw, and goes on after it left.
    let log = world.log_file(&pod.1, &ticker);
    let after = format!("tick {}", first + 6);
    wait_until(
        "the log keeps being written",
        Duration::from_secs(10),
        async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains(later.trim_end())
                && text.contains(&after)
                && text.contains(" stderr F tock")
        },
    )
    .await;

    // stdin into a terminal: what the client types reaches the main process, and ^D ends
    // it (containerd's runc shim wires a container's stdin only with a terminal when its
    // output goes to a logging binary).
    let mut echo = world.container("echo", "exec cat");
    echo.stdin = true;
    echo.stdin_once = true;
    echo.tty = true;
    let echo_id = start(&world, &pod, &echo).await;
    let (io, mut ends) = client((true, true, false, false));
    let session = backend.attach(&echo_id, io);
    let driver = async {
        let (mut stdin, mut out) = (ends.stdin.take().unwrap(), ends.stdout.take().unwrap());
        let mut seen = Vec::new();
        stdin.write_all(b"ping\n").await.expect("write");
        // The terminal echoes the line, then `cat` prints it.
        read_until(&mut out, &mut seen, "ping\r\nping", Duration::from_secs(10)).await;
        stdin.write_all(b"\x04").await.expect("^D");
        let mut rest = Vec::new();
        out.read_to_end(&mut rest).await.expect("read");
        drop(stdin);
    };
    // A hang guard, not a speed check: the machine may be busy (100 execs run beside it).
    let (ended, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(session, driver)
    })
    .await
    .expect("attach ends when the process exits");
    ended.expect("attach");
    wait_state(&world, &echo_id, ContainerState::Exited).await;
    let status = backend
        .container_status(&echo_id, false)
        .await
        .expect("status");
    assert_eq!(status.exit_code, 0, "{status:?}");
    let text = std::fs::read_to_string(world.log_file(&pod.1, &echo)).expect("log");
    assert!(text.contains("ping"), "{text}");
    let err = backend.check_attach(&echo_id).await.expect_err("exited");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");

    // A terminal: resizes reach the main process.
    let mut term = world.container("term", "while :; do busybox stty size; sleep 0.3; done");
    term.tty = true;
    term.stdin = true;
    let term_id = start(&world, &pod, &term).await;
    let (io, mut ends) = client((false, true, false, true));
    let resize = ends.resize.take().unwrap();
    let session = backend.attach(&term_id, io);
    let driver = async {
        let mut out = ends.stdout.take().unwrap();
        resize
            .send(TermSize {
                width: 77,
                height: 33,
            })
            .await
            .expect("resize");
        let mut seen = Vec::new();
        read_until(&mut out, &mut seen, "33 77", Duration::from_secs(10)).await;
    };
    tokio::select! {
        ended = session => panic!("attach ended early: {ended:?}"),
        () = driver => {}
    }

    // Neither stdin nor tty: refused, saying why.
    let plain = start(&world, &pod, &world.container("plain", "sleep 1000")).await;
    let err = backend.check_attach(&plain).await.expect_err("plain");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.to_string()
            .contains("was not created with stdin or tty"),
        "{err}"
    );
    let err = backend
        .attach(&plain, client((false, true, true, false)).0)
        .await
        .expect_err("plain attach");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = backend
        .check_attach(&new_container_id())
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
}

fn refused(r: crimux_core::Result<crimux_core::streaming::DuplexStream>) -> crimux_core::Error {
    match r {
        Ok(_) => panic!("port_forward connected"),
        Err(e) => e,
    }
}

async fn http_get(
    backend: &ContainerdBackend,
    pod: &crimux_core::PodSandboxId,
    port: u16,
) -> String {
    let mut conn = backend.port_forward(pod, port).await.expect("port_forward");
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .expect("request");
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).await.expect("reply");
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_reaches_localhost_in_the_pod() {
    let world = ContainerWorld::new().await;
    let backend = world.backend.as_ref();
    let pod = run_pod(&world, world.pod("pf")).await;
    let server = world.container(
        "httpd",
        "mkdir -p /www && echo hello-from-the-pod > /www/index.html && \
         exec busybox httpd -f -p 127.0.0.1:8080 -h /www",
    );
    start(&world, &pod, &server).await;
    backend.check_port_forward(&pod.0).await.expect("check");
    wait_until(
        "httpd listens in the pod",
        Duration::from_secs(10),
        async || backend.port_forward(&pod.0, 8080).await.is_ok(),
    )
    .await;

    // Two connections at once.
    let (a, b) = tokio::join!(
        http_get(backend, &pod.0, 8080),
        http_get(backend, &pod.0, 8080)
    );
    for reply in [a, b] {
        assert!(
            reply.starts_with("HTTP/1.") && reply.contains("hello-from-the-pod"),
            "{reply}"
        );
    }
    // The pod's localhost is not the host's.
    assert!(std::net::TcpStream::connect("127.0.0.1:8080")
        .map(|mut s| {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            !r.contains("hello-from-the-pod")
        })
        .unwrap_or(true));

    let err = refused(backend.port_forward(&pod.0, 8081).await);
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(
        err.to_string().contains("connection refused on port 8081"),
        "{err}"
    );

    // A host-network pod: localhost is the host's.
    let mut host = host_network_config("pf-host");
    host.log_directory = world.logs.join("pf-host").to_string_lossy().into_owned();
    let host_pod = run_pod(&world, host).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let serve = async {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.write_all(b"from the host").await.expect("write");
    };
    let (conn, ()) = tokio::join!(backend.port_forward(&host_pod.0, port), serve);
    let mut got = String::new();
    conn.expect("host port_forward")
        .read_to_string(&mut got)
        .await
        .expect("read");
    assert_eq!(got, "from the host");

    let err = backend
        .check_port_forward(&new_sandbox_id())
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    backend.stop_pod_sandbox(&pod.0).await.expect("stop");
    let err = backend
        .check_port_forward(&pod.0)
        .await
        .expect_err("stopped");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let err = refused(backend.port_forward(&pod.0, 8080).await);
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
}
