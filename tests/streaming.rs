//! Streaming end to end: the real crimux binary, a private containerd and busybox pods; the
//! Exec, Attach and PortForward RPCs hand out URLs at crimux's streaming server, and
//! `crimux_streaming::client` (SPDY/3.1 as kubelet and crictl speak it, and WebSocket)
//! drives the sessions. Outcomes are checked in the session's output and exit code, inside
//! the container (ExecSync `ps`), in containerd's task API and under crimux's root.

mod common;

use std::time::Duration;

use common::eventually;
use common::streaming::{
    assert_no_new_fifos, assert_no_process, attach_url, exec_output, exec_url, http_get,
    port_forward_url, read_until, root_fifos, sleeping_pod, task_pids, Streams,
};
use crimux_core::Error;
use crimux_streaming::client::{self, ExecOptions, Protocol};
use k8s_cri::v1::{ContainerConfig, ContainerState, StopContainerRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_pipes_stdin_to_stdout_and_reports_exit_codes() {
    let p = common::streaming::env().await;
    let pod = sleeping_pod(&p, "echo").await;
    let c = &pod.container;

    let out = exec_output(&p, c, &["cat"], Some(b"hello through stdin\n")).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello through stdin\n"
    );
    assert_eq!((out.stderr.len(), out.exit_code), (0, 0));

    // A payload larger than one SPDY flow-control window (64 KiB) in both directions.
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = exec_output(&p, c, &["cat"], Some(&big)).await;
    assert_eq!(out.stdout.len(), big.len());
    assert!(out.stdout == big, "cat returned different bytes");

    let out = exec_output(
        &p,
        c,
        &["sh", "-c", "echo out; echo err >&2; exit 42"],
        None,
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.exit_code, 42);

    let out = exec_output(&p, c, &["true"], None).await;
    assert_eq!(out.exit_code, 0);
    let out = exec_output(&p, c, &["sh", "-c", "exit 1"], None).await;
    assert_eq!(out.exit_code, 1);

    // An older protocol still works: v2 reports a failure as text, v3 like v2.
    let url = exec_url(&p, c, &["sh", "-c", "echo v2"], Streams::OUTPUT)
        .await
        .expect("Exec");
    let opts = ExecOptions {
        protocols: vec![Protocol::V2],
        ..Streams::OUTPUT.options()
    };
    let session = client::exec(&url, opts).await.expect("v2 session");
    assert_eq!(session.protocol(), Protocol::V2);
    let out = session.output().await.expect("v2 output");
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"v2\n"[..], 0));

    p.stop_remove_pod(&pod.id).await;
    p.assert_no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_tty_resize_shows_in_stty_size() {
    let p = common::streaming::env().await;
    let pod = sleeping_pod(&p, "tty").await;
    let url = exec_url(&p, &pod.container, &["sh"], Streams::TTY)
        .await
        .expect("Exec with tty");
    let mut session = client::exec(&url, Streams::TTY.options())
        .await
        .expect("tty session");
    assert_eq!(session.protocol(), Protocol::V4);
    for (w, h) in [(100u16, 30u16), (132, 43)] {
        session.resize(w, h).await.expect("resize");
        // The resize and stdin streams are independent: ask until the new size shows.
        let want = format!("{h} {w}");
        let mut seen = String::new();
        let shown = tokio::time::timeout(10 * SECOND, async {
            loop {
                session.write_stdin(b"stty size\n").await.expect("stdin");
                let read = tokio::time::timeout(SECOND / 2, async {
                    while let Ok(Some(chunk)) = session.read_stdout().await {
                        seen.push_str(&String::from_utf8_lossy(&chunk));
                        if seen.contains(&want) {
                            return;
                        }
                    }
                })
                .await;
                if read.is_ok() {
                    return;
                }
            }
        })
        .await;
        assert!(shown.is_ok(), "stty size never showed {want:?}: {seen:?}");
    }
    // A tty has no separate stderr: it all comes on stdout.
    session
        .write_stdin(b"echo to-stderr >&2; exit 7\n")
        .await
        .expect("stdin");
    let out = session.output().await.expect("tty output");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("to-stderr"),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.exit_code, 7);
    p.stop_remove_pod(&pod.id).await;
    p.assert_no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attach_streams_a_running_containers_output() {
    let p = common::streaming::env().await;
    let config = p.pod_config("attach");
    let pod = p.run_pod(&config).await;
    let script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done";
    let ctr = ContainerConfig {
        stdin: true,
        ..p.container_config("ticker", script)
    };
    let id = p.create_start(&pod, &config, &ctr).await;

    let url = attach_url(&p, &id, Streams::OUTPUT).await.expect("Attach");
    let mut session = client::attach(&url, Streams::OUTPUT.options())
        .await
        .expect("attach session");
    // Two ticks, each printed after the attach began.
    read_until(&mut session, "tick", 10 * SECOND).await;
    read_until(&mut session, "tick", 10 * SECOND).await;
    drop(session);

    // Again over WebSocket v5.
    let url = attach_url(&p, &id, Streams::OUTPUT).await.expect("Attach");
    let mut session = client::attach_websocket(&url, Streams::OUTPUT.options())
        .await
        .expect("websocket attach");
    assert_eq!(session.protocol(), Protocol::V5);
    read_until(&mut session, "tick", 10 * SECOND).await;
    drop(session);

    // Detaching leaves the container running, and its log kept every tick.
    tokio::time::sleep(SECOND / 2).await;
    let status = p.container_status(&id).await;
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    let log = std::path::Path::new(&config.log_directory).join("ticker.log");
    let text = std::fs::read_to_string(&log).expect("read container log");
    assert!(text.contains("stdout F tick 5"), "log: {text}");

    // Attach to a container created without stdin or tty is refused.
    let plain = p
        .create_start(
            &pod,
            &config,
            &p.container_config("plain", "exec sleep 3600"),
        )
        .await;
    let refused = attach_url(&p, &plain, Streams::OUTPUT).await;
    assert_eq!(
        refused.expect_err("attach without stdin or tty").code(),
        Code::FailedPrecondition
    );
    p.stop_remove_pod(&pod).await;
    p.assert_no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attach_stdin_reaches_a_reading_main_process() {
    let p = common::streaming::env().await;
    let config = p.pod_config("attach-in");
    let pod = p.run_pod(&config).await;
    // Created with stdin (not stdin_once): its stdin stays open while nobody is attached,
    // as with containerd's CRI, so `read` waits instead of seeing EOF.
    let ctr = ContainerConfig {
        stdin: true,
        ..p.container_config("reader", "while read line; do echo got $line; done")
    };
    let id = p.create_start(&pod, &config, &ctr).await;
    tokio::time::sleep(SECOND).await;
    let status = p.container_status(&id).await;
    assert_eq!(
        status.state,
        ContainerState::ContainerRunning as i32,
        "a stdin container exited on its own (exit code {}): its stdin was closed",
        status.exit_code
    );

    let url = attach_url(&p, &id, Streams::PIPES).await.expect("Attach");
    let mut session = client::attach(&url, Streams::PIPES.options())
        .await
        .expect("attach session");
    session.write_stdin(b"ping\n").await.expect("stdin");
    read_until(&mut session, "got ping", 10 * SECOND).await;
    drop(session);
    let log = std::path::Path::new(&config.log_directory).join("reader.log");
    eventually("the log to show the echo", 5 * SECOND, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        match text.contains("got ping") {
            true => Ok(()),
            false => Err(format!("log: {text}")),
        }
    })
    .await;
    p.stop_remove_pod(&pod).await;
    p.assert_no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn port_forward_two_parallel_requests_and_a_refused_port() {
    let p = common::streaming::env().await;
    let config = p.pod_config("pf");
    let pod = p.run_pod(&config).await;
    let script = "mkdir -p /www && echo hello-from-pod > /www/index.html && \
                  exec httpd -f -p 8080 -h /www";
    let web = p
        .create_start(&pod, &config, &p.container_config("web", script))
        .await;
    eventually("httpd to answer", 15 * SECOND, || async {
        let r = p
            .exec(
                &web,
                &["wget", "-q", "-O-", "http://127.0.0.1:8080/index.html"],
            )
            .await;
        match r.exit_code {
            0 => Ok(()),
            n => Err(format!(
                "wget exit {n}: {}",
                String::from_utf8_lossy(&r.stderr)
            )),
        }
    })
    .await;

    let url = port_forward_url(&p, &pod, &[8080])
        .await
        .expect("PortForward");
    let session = client::port_forward(&url, Default::default())
        .await
        .expect("port-forward session");
    let get = |fwd: client::Forwarded| async move {
        let mut fwd = fwd;
        let response = http_get(&mut fwd).await;
        let error = tokio::time::timeout(10 * SECOND, fwd.error())
            .await
            .expect("error stream ends");
        (response, error)
    };
    let (a, b) = tokio::join!(session.open(8080), session.open(8080));
    let (a, b) = (a.expect("request 0"), b.expect("request 1"));
    assert_ne!(a.request_id, b.request_id);
    let (ra, rb) = tokio::join!(get(a), get(b));
    for (response, error) in [ra, rb] {
        assert!(
            response.starts_with("HTTP/1.") && response.contains("hello-from-pod"),
            "{response:?}"
        );
        assert_eq!(error.expect("error stream"), None);
    }

    // Nothing listens on 8081: the error stream says so, the session lives on.
    let refused = session.open(8081).await.expect("request to 8081");
    let (response, error) = get(refused).await;
    assert!(response.is_empty(), "{response:?}");
    let text = error
        .expect("error stream")
        .expect("an error for port 8081");
    assert!(text.contains("8081"), "{text}");
    let again = session.open(8080).await.expect("request after the refusal");
    let (response, _) = get(again).await;
    assert!(response.contains("hello-from-pod"), "{response:?}");
    session.close().await;

    let bad = port_forward_url(&p, "no-such-pod", &[80]).await;
    assert_eq!(bad.expect_err("unknown pod").code(), Code::NotFound);
    p.stop_remove_pod(&pod).await;
    p.assert_no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_and_reused_tokens_are_refused_and_the_server_goes_on() {
    let p = common::streaming::env().await;
    let pod = sleeping_pod(&p, "tokens").await;
    let url = exec_url(&p, &pod.container, &["echo", "hi"], Streams::OUTPUT)
        .await
        .expect("Exec");
    let (base, _) = url.rsplit_once('/').expect("URL ends with a token");
    for bad in [
        format!("{base}/not-a-token"),
        format!("{base}/{}", "0".repeat(32)),
        format!(
            "{}/nothing-here",
            base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base)
        ),
    ] {
        match client::exec(&bad, Streams::OUTPUT.options()).await {
            Err(Error::NotFound(_))
            | Err(Error::Unavailable(_))
            | Err(Error::InvalidArgument(_)) => {}
            Err(other) => panic!("{bad}: unexpected error kind {other:?}"),
            Ok(_) => panic!("{bad}: a bad token opened a session"),
        }
    }
    // Garbage instead of an HTTP request: the connection ends, nothing else does.
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("authority")
        .to_string();
    let mut raw = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect");
    raw.write_all(&[0x80, 3, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0])
        .await
        .expect("write garbage");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(10 * SECOND, raw.read_to_end(&mut sink)).await;

    // The good URL still works, once.
    let session = client::exec(&url, Streams::OUTPUT.options())
        .await
        .expect("good token after bad ones");
    let out = session.output().await.expect("output");
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"hi\n"[..], 0));
    match client::exec(&url, Streams::OUTPUT.options()).await {
        Err(Error::NotFound(_)) | Err(Error::Unavailable(_)) => {}
        Err(other) => panic!("reused token: unexpected error kind {other:?}"),
        Ok(_) => panic!("a token was accepted twice"),
    }
    let out = exec_output(&p, &pod.container, &["echo", "still fine"], None).await;
    assert_eq!(out.stdout, b"still fine\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_disconnect_leaves_no_exec_process_or_fifo() {
    let p = common::streaming::env().await;
    let pod = sleeping_pod(&p, "drop").await;
    let c = &pod.container;
    let fifos = root_fifos(&p);
    let pids = task_pids(&p, c).await;
    assert!(pids >= 1, "the container's task has no process");

    for (streams, marker) in [(Streams::PIPES, "54321"), (Streams::TTY, "54322")] {
        let script = format!("echo started; exec sleep {marker}");
        let url = exec_url(&p, c, &["sh", "-c", &script], streams)
            .await
            .expect("Exec");
        let mut session = client::exec(&url, streams.options())
            .await
            .expect("session");
        read_until(&mut session, "started", 10 * SECOND).await;
        assert!(
            common::streaming::processes(&p, c)
                .await
                .iter()
                .any(|l| l.contains(&format!("sleep {marker}"))),
            "the exec process is not running"
        );
        // The client dies: its TCP connection closes without GOAWAY or FIN on stdin.
        drop(session);
        assert_no_process(&p, c, &format!("sleep {marker}")).await;
    }
    assert_no_new_fifos(&p, &fifos).await;
    eventually(
        "containerd to list only the task's own processes",
        15 * SECOND,
        || async {
            match task_pids(&p, c).await {
                n if n == pids => Ok(()),
                n => Err(format!("{n} processes, {pids} before")),
            }
        },
    )
    .await;
    p.stop_remove_pod(&pod.id).await;
    p.assert_no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_parallel_execs() {
    let p = common::streaming::env().await;
    // Spread over four pods: each container's shim runs its execs' `runc exec` one at a
    // time, so four shims let the two cores work in parallel.
    let mut pods = Vec::new();
    for name in ["many0", "many1", "many2", "many3"] {
        pods.push(sleeping_pod(&p, name).await);
    }
    let fifos = root_fifos(&p);
    let p = std::sync::Arc::new(p);
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..100i32 {
        let p = p.clone();
        let c = pods[i as usize % pods.len()].container.clone();
        runs.spawn(async move {
            let n = i.to_string();
            let cmd = [
                "sh",
                "-c",
                "read x; echo $x-$0; exit $(($0 % 5))",
                n.as_str(),
            ];
            let out = exec_output(&p, &c, &cmd, Some(format!("in{i}\n").as_bytes())).await;
            (i, out)
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(300), runs.join_all())
        .await
        .expect("100 execs within 5 minutes");
    for (i, out) in all {
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("in{i}-{i}\n"));
        assert_eq!(out.exit_code, i % 5, "exec {i}");
    }
    assert_no_new_fifos(&p, &fifos).await;
    for pod in &pods {
        p.stop_remove_pod(&pod.id).await;
    }
    p.assert_no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_exec_v5_closes_stdin_and_reports_exit_code() {
    let p = common::streaming::env().await;
    let pod = sleeping_pod(&p, "ws").await;
    let c = &pod.container;

    let url = exec_url(&p, c, &["cat"], Streams::PIPES)
        .await
        .expect("Exec");
    let mut session = client::exec_websocket(&url, Streams::PIPES.options())
        .await
        .expect("websocket session");
    assert_eq!(session.protocol(), Protocol::V5);
    session
        .write_stdin(b"over websocket\n")
        .await
        .expect("stdin");
    session.close_stdin().await.expect("close stdin");
    let out = session.output().await.expect("output");
    assert_eq!(out.stdout, b"over websocket\n");
    assert_eq!(out.exit_code, 0);

    let script = ["sh", "-c", "echo e >&2; exit 42"];
    let url = exec_url(&p, c, &script, Streams::OUTPUT)
        .await
        .expect("Exec");
    let out = client::exec_websocket(&url, Streams::OUTPUT.options())
        .await
        .expect("websocket session")
        .output()
        .await
        .expect("output");
    assert_eq!((out.stderr.as_slice(), out.exit_code), (&b"e\n"[..], 42));

    // v4 over WebSocket, when that is all the client offers.
    let url = exec_url(&p, c, &["echo", "v4"], Streams::OUTPUT)
        .await
        .expect("Exec");
    let opts = ExecOptions {
        protocols: vec![Protocol::V4],
        ..Streams::OUTPUT.options()
    };
    let session = client::exec_websocket(&url, opts)
        .await
        .expect("v4 session");
    assert_eq!(session.protocol(), Protocol::V4);
    let out = session.output().await.expect("output");
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"v4\n"[..], 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_attach_and_port_forward_requests_are_validated() {
    let p = common::streaming::env().await;
    let pod = sleeping_pod(&p, "validate").await;
    let c = &pod.container;
    let tty_stderr = Streams {
        stderr: true,
        ..Streams::TTY
    };
    let none = Streams::default();
    let cases: &[(&str, Result<String, tonic::Status>, Code)] = &[
        (
            "tty+stderr",
            exec_url(&p, c, &["true"], tty_stderr).await,
            Code::InvalidArgument,
        ),
        (
            "no streams",
            exec_url(&p, c, &["true"], none).await,
            Code::InvalidArgument,
        ),
        (
            "unknown container",
            exec_url(&p, "nope", &["true"], Streams::OUTPUT).await,
            Code::NotFound,
        ),
        (
            "attach tty+stderr",
            attach_url(&p, c, tty_stderr).await,
            Code::InvalidArgument,
        ),
        (
            "attach no streams",
            attach_url(&p, c, none).await,
            Code::InvalidArgument,
        ),
        (
            "attach unknown",
            attach_url(&p, "nope", Streams::OUTPUT).await,
            Code::NotFound,
        ),
        (
            "port-forward unknown pod",
            port_forward_url(&p, "nope", &[80]).await,
            Code::NotFound,
        ),
    ];
    for (what, got, want) in cases {
        match got {
            Ok(url) => panic!("{what}: accepted with URL {url}"),
            Err(status) => assert_eq!(status.code(), *want, "{what}: {status:?}"),
        }
    }

    p.rt()
        .await
        .stop_container(StopContainerRequest {
            container_id: c.clone(),
            timeout: 0,
        })
        .await
        .expect("StopContainer");
    let stopped = exec_url(&p, c, &["true"], Streams::OUTPUT).await;
    assert_eq!(
        stopped.expect_err("exec in a stopped container").code(),
        Code::FailedPrecondition
    );
    let stopped = attach_url(&p, c, Streams::OUTPUT).await;
    assert_eq!(
        stopped.expect_err("attach to a stopped container").code(),
        Code::FailedPrecondition
    );
    p.stop_remove_pod(&pod.id).await;
    let gone = port_forward_url(&p, &pod.id, &[80]).await;
    assert!(gone.is_err(), "port-forward to a removed pod was accepted");
    p.assert_no_leaks().await;
}
