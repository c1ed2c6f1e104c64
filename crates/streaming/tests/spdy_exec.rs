//! remotecommand over SPDY/3.1 against the real server (TCP) and a fake backend: version
//! negotiation, streams identified by type in any order, the error-stream status, resize,
//! tokens, limits, client drop and many sessions at once.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{closed, request, server, server_with, SpdyClient};
use crimux_streaming::{ServerOptions, Streams};
use tokio::io::AsyncWriteExt;

const V4: &str = "v4.channel.k8s.io";

fn pipes(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Streams {
    Streams {
        stdin,
        stdout,
        stderr,
        tty,
    }
}

fn exec(server: &crimux_streaming::Server, cmd: &[&str], streams: Streams) -> String {
    let cmd = cmd.iter().map(|s| s.to_string()).collect();
    server
        .exec_url(&"c1".into(), cmd, streams)
        .expect("exec url")
}

#[tokio::test]
async fn echo_with_streams_opened_in_any_order() {
    let (server, _) = server().await;
    let url = exec(&server, &["echo"], pipes(true, true, false, false));
    assert!(url.starts_with(&format!("{}/exec/", server.base_url())));
    let (head, mut c) = SpdyClient::connect(&url, &[V4, "v3.channel.k8s.io"]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("X-Stream-Protocol-Version: v4.channel.k8s.io"),
        "{head}"
    );
    // stdin first, error last: the server goes by streamType, not order.
    c.open(1, &[("streamType", "stdin")]).await;
    c.open(3, &[("streamType", "stdout")]).await;
    c.open(5, &[("streamType", "error")]).await;
    c.until(|c| c.replied.len() == 3).await;
    c.data(1, b"hello ", false).await;
    c.data(1, b"world", true).await;
    c.until(|c| c.fin.contains(&3) && c.fin.contains(&5)).await;
    assert_eq!(c.text(3), "hello world");
    assert_eq!(c.text(5), r#"{"metadata":{},"status":"Success"}"#);
    c.until(|c| c.eof).await;
}

#[tokio::test]
async fn exit_code_is_reported_per_version() {
    let (server, _) = server().await;
    let url = exec(&server, &["exit", "42"], pipes(false, true, false, false));
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await;
    c.open(1, &[("streamtype", "error")]).await;
    c.open(3, &[("streamtype", "stdout")]).await;
    c.until(|c| c.fin.contains(&1)).await;
    let status: serde_json::Value = serde_json::from_str(&c.text(1)).unwrap();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "42");
    assert!(c.fin.contains(&3), "stdout closed before the status");

    // v2 (client preference wins): plain text, and nothing on success.
    let url = exec(&server, &["exit", "42"], pipes(false, true, false, false));
    let (head, mut c) = SpdyClient::connect(&url, &["v2.channel.k8s.io, v4.channel.k8s.io"]).await;
    assert!(
        head.contains("X-Stream-Protocol-Version: v2.channel.k8s.io"),
        "{head}"
    );
    c.open(1, &[("streamtype", "stdout")]).await;
    c.open(3, &[("streamtype", "error")]).await;
    c.until(|c| c.fin.contains(&3)).await;
    assert!(c.text(3).contains("exit code 42"), "{}", c.text(3));
    assert!(!c.text(3).starts_with('{'));

    let url = exec(&server, &["exit", "0"], pipes(false, true, false, false));
    let (head, mut c) = SpdyClient::connect(&url, &[]).await;
    assert!(!head.contains("X-Stream-Protocol-Version"), "{head}");
    c.open(1, &[("streamtype", "stdout")]).await;
    c.open(3, &[("streamtype", "error")]).await;
    c.until(|c| c.fin.contains(&3)).await;
    assert_eq!(c.text(3), "");
}

#[tokio::test]
async fn backend_errors_and_stderr() {
    let (server, _) = server().await;
    let url = exec(
        &server,
        &["stderr", "oops"],
        pipes(false, false, true, false),
    );
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await;
    c.open(1, &[("streamtype", "stderr")]).await;
    c.open(3, &[("streamtype", "error")]).await;
    c.until(|c| c.fin.contains(&3)).await;
    assert_eq!(c.text(1), "oops");
    assert!(c.text(3).contains("\"message\":\"3\""), "{}", c.text(3));

    let url = exec(&server, &["fail"], pipes(false, true, false, false));
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await;
    c.open(1, &[("streamtype", "stdout")]).await;
    c.open(3, &[("streamtype", "error")]).await;
    c.until(|c| c.fin.contains(&3)).await;
    let status: serde_json::Value = serde_json::from_str(&c.text(3)).unwrap();
    assert_eq!(status["reason"], "InternalError");
    assert!(status["message"].as_str().unwrap().contains("c1 is gone"));
}

#[tokio::test]
async fn tty_resize_events_reach_the_backend() {
    let (server, _) = server().await;
    let url = exec(&server, &["resize"], pipes(true, true, false, true));
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await;
    c.open(1, &[("streamtype", "resize")]).await;
    c.open(3, &[("streamtype", "stdout")]).await;
    c.open(5, &[("streamtype", "stdin")]).await;
    c.open(7, &[("streamtype", "error")]).await;
    c.data(1, br#"{"Width":80,"Height":24}"#, false).await;
    c.data(1, b"{\"Width\":132,", false).await;
    c.data(1, b"\"Height\":43}\n", false).await;
    c.until(|c| c.text(3) == "80x24\n132x43\n").await;
    c.data(1, br#"{"Width":0,"Height":0}"#, true).await;
    c.until(|c| c.fin.contains(&7)).await;
    assert_eq!(c.text(7), r#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn attach_echoes() {
    let (server, _) = server().await;
    let url = server
        .attach_url(&"c1".into(), pipes(true, true, false, false))
        .unwrap();
    assert!(url.contains("/attach/"));
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await;
    c.open(1, &[("streamtype", "stdout")]).await;
    c.open(3, &[("streamtype", "stdin")]).await;
    c.open(5, &[("streamtype", "error")]).await;
    c.data(3, b"ping", true).await;
    c.until(|c| c.fin.contains(&5)).await;
    assert_eq!(c.text(1), "ping");
}

#[tokio::test]
async fn bad_reused_expired_and_mismatched_tokens_are_404() {
    let options = ServerOptions {
        token_ttl: Duration::from_millis(200),
        ..Default::default()
    };
    let (server, _) = server_with(options).await;
    let base = server.base_url().to_string();
    let (head, mut tcp) = request(&format!("{base}/exec/nosuchtoken"), "").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(closed(&mut tcp).await);

    let url = exec(&server, &["exit", "0"], pipes(false, true, false, false));
    let (head, _c) = SpdyClient::connect(&url, &[V4]).await;
    assert!(head.starts_with("HTTP/1.1 101"));
    let (head, _) = request(&url, "").await;
    assert!(head.starts_with("HTTP/1.1 404"), "reused: {head}");

    let url = exec(&server, &["exit", "0"], pipes(false, true, false, false));
    let (head, _) = request(&url.replace("/exec/", "/attach/"), "").await;
    assert!(head.starts_with("HTTP/1.1 404"), "wrong kind: {head}");

    let url = exec(&server, &["exit", "0"], pipes(false, true, false, false));
    assert_eq!(server.outstanding_tokens(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.outstanding_tokens(), 0);
    let (head, _) = request(&url, "").await;
    assert!(head.starts_with("HTTP/1.1 404"), "expired: {head}");

    let (head, _) = request(&format!("{base}/other/x/y"), "").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[tokio::test]
async fn token_cap_and_argument_checks() {
    let options = ServerOptions {
        max_tokens: 2,
        ..Default::default()
    };
    let (server, _) = server_with(options).await;
    exec(&server, &["echo"], pipes(true, true, false, false));
    server.port_forward_url(&"p1".into(), vec![80]).unwrap();
    let err = server
        .attach_url(&"c1".into(), pipes(false, true, false, false))
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    let (server, _) = common::server().await;
    let none = server.exec_url(
        &"c1".into(),
        vec!["sh".into()],
        pipes(false, false, false, false),
    );
    assert_eq!(none.unwrap_err().code(), tonic::Code::InvalidArgument);
    let tty_err = server.attach_url(&"c1".into(), pipes(false, true, true, true));
    assert_eq!(tty_err.unwrap_err().code(), tonic::Code::InvalidArgument);
    let no_cmd = server.exec_url(&"c1".into(), vec![], pipes(false, true, false, false));
    assert_eq!(no_cmd.unwrap_err().code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn oversized_malformed_and_unnegotiable_requests_close_only_their_connection() {
    let (server, _) = server().await;
    let url = exec(&server, &["echo"], pipes(true, true, false, false));
    // An open session keeps working while other connections misbehave.
    let (_, mut good) = SpdyClient::connect(&url, &[V4]).await;
    good.open(1, &[("streamtype", "stdin")]).await;
    good.open(3, &[("streamtype", "stdout")]).await;
    good.open(5, &[("streamtype", "error")]).await;

    let big = format!("X-Big: {}\r\n", "a".repeat(32 * 1024));
    let (head, mut tcp) = request(&format!("{}/exec/x", server.base_url()), &big).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(closed(&mut tcp).await);

    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    tcp.write_all(b"GARBAGE\r\n\r\n").await.unwrap();
    assert!(closed(&mut tcp).await);

    let url2 = exec(&server, &["echo"], pipes(true, true, false, false));
    let (head, mut tcp) = request(
        &url2,
        "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v9.channel.k8s.io\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(head.contains("X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io"));
    assert!(closed(&mut tcp).await);

    // A malformed SPDY frame ends that session only.
    let url3 = exec(&server, &["hang"], pipes(false, true, false, false));
    let (_, mut bad) = SpdyClient::connect(&url3, &[V4]).await;
    bad.tcp
        .write_all(&[0, 0, 0, 0, 0, 0, 0, 1, b'x'])
        .await
        .unwrap();
    bad.until(|c| c.eof).await;

    good.data(1, b"still here", true).await;
    good.until(|c| c.fin.contains(&5)).await;
    assert_eq!(good.text(3), "still here");
}

#[tokio::test]
async fn streams_not_opened_in_time_end_the_connection() {
    let options = ServerOptions {
        stream_creation_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let (server, counters) = server_with(options).await;
    let url = exec(&server, &["echo"], pipes(true, true, false, false));
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await;
    c.open(1, &[("streamtype", "stdin")]).await;
    c.open(3, &[("streamtype", "bogus")]).await;
    c.until(|c| c.eof).await;
    assert_eq!(
        c.reset.get(&3),
        Some(&crimux_spdy::RstStatus::RefusedStream)
    );
    assert_eq!(counters.started.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn client_drop_drops_the_backend_call() {
    let (server, counters) = server().await;
    let url = exec(&server, &["hang"], pipes(true, true, false, false));
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await;
    c.open(1, &[("streamtype", "stdin")]).await;
    c.open(3, &[("streamtype", "stdout")]).await;
    c.open(5, &[("streamtype", "error")]).await;
    c.until(|c| c.replied.len() == 3).await;
    tokio::time::timeout(common::WAIT, async {
        while counters.started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(server.active_connections(), 1);
    drop(c);
    tokio::time::timeout(common::WAIT, async {
        while counters.dropped.load(Ordering::SeqCst) == 0 || server.active_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("backend call dropped and connection gone");
}

#[tokio::test]
async fn idle_sessions_are_closed() {
    let options = ServerOptions {
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (server, counters) = server_with(options).await;
    let url = exec(&server, &["hang"], pipes(false, true, false, false));
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await;
    c.open(1, &[("streamtype", "stdout")]).await;
    c.open(3, &[("streamtype", "error")]).await;
    c.until(|c| c.eof).await;
    assert!(c.goaway);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slow_reader_gets_back_pressure_not_buffers() {
    let (server, counters) = server().await;
    let total = 64 << 20;
    let url = exec(
        &server,
        &["flood", &total.to_string()],
        pipes(false, true, false, false),
    );
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await;
    c.open(1, &[("streamtype", "stdout")]).await;
    c.open(3, &[("streamtype", "error")]).await;
    // Not reading: the backend must stall after the socket buffers and the bounded queue.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let written = counters.flood_written.load(Ordering::SeqCst);
    assert!(
        written < 24 << 20,
        "{written} bytes accepted while the client read nothing"
    );
    c.until(|c| c.fin.contains(&3)).await;
    assert_eq!(c.data.get(&1).map(Vec::len), Some(total));
    assert_eq!(c.text(3), r#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn a_hundred_concurrent_sessions() {
    let (server, _) = server().await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let url = exec(&server, &["echo"], pipes(true, true, false, false));
        tasks.push(tokio::spawn(async move {
            let (_, mut c) = SpdyClient::connect(&url, &[V4]).await;
            c.open(1, &[("streamtype", "error")]).await;
            c.open(3, &[("streamtype", "stdin")]).await;
            c.open(5, &[("streamtype", "stdout")]).await;
            let msg = format!("session {i}");
            c.data(3, msg.as_bytes(), true).await;
            c.until(|c| c.fin.contains(&1)).await;
            assert_eq!(c.text(5), msg);
            assert_eq!(c.text(1), r#"{"metadata":{},"status":"Success"}"#);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The crate's own client (as the end-to-end tests use it) against a backend that starts
/// each process late, 100 sessions at once: every one finishes with its output and code.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_slow_sessions_with_the_crate_client() {
    use crimux_streaming::client::{self, ExecOptions};
    let (server, _) = server().await;
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..100u64 {
        let delay = (i * 37) % 1500;
        let url = exec(
            &server,
            &["slow", &delay.to_string()],
            pipes(true, true, true, false),
        );
        runs.spawn(async move {
            let opts = ExecOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            };
            let run = async {
                let mut s = client::exec(&url, opts).await?;
                s.write_stdin(format!("in{i}\n").as_bytes()).await?;
                s.close_stdin().await?;
                s.output().await
            };
            let out = tokio::time::timeout(Duration::from_secs(30), run)
                .await
                .unwrap_or_else(|_| panic!("session {i} stuck"))
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("in{i}\n"));
            assert_eq!(out.exit_code, (delay % 5) as i32, "session {i}");
        });
    }
    runs.join_all().await;
}
