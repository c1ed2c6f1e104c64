//! The client against crimux's own streaming server, with a scripted backend instead of
//! containerd: both ends of the wire protocol, exec, attach and port-forward, over SPDY and
//! WebSocket, with no container in the way (tests/streaming.rs does it for real).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use crimux_core::streaming::{DuplexStream, ExecSpec, StreamIo};
use crimux_core::{ContainerId, Error, PodSandboxId, Result, StreamingBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ExecOptions, Protocol, SpdyConfig};
use crate::{Server, ServerOptions, Streams};

/// Runs `cmd[0]`: `cat` copies stdin to stdout; `exit N` exits N after writing "out" and
/// "err"; `zeros N` writes N zero bytes; `sizes` prints every resize until stdin ends;
/// `hang` waits forever (until the session is dropped).
struct Script;

#[async_trait]
impl StreamingBackend for Script {
    async fn check_exec(&self, _id: &ContainerId) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _id: &ContainerId, spec: &ExecSpec, mut io: StreamIo) -> Result<i32> {
        let arg = |i: usize| spec.cmd.get(i).cloned().unwrap_or_default();
        let io_err = |e: std::io::Error| Error::Internal(e.to_string());
        match arg(0).as_str() {
            "cat" => {
                let (Some(mut input), Some(mut output)) = (io.stdin.take(), io.stdout.take())
                else {
                    return Err(Error::InvalidArgument("cat needs stdin and stdout".into()));
                };
                tokio::io::copy(&mut input, &mut output)
                    .await
                    .map_err(io_err)?;
                output.shutdown().await.map_err(io_err)?;
                Ok(0)
            }
            "exit" => {
                if let Some(out) = io.stdout.as_mut() {
                    out.write_all(b"out").await.map_err(io_err)?;
                }
                if let Some(err) = io.stderr.as_mut() {
                    err.write_all(b"err").await.map_err(io_err)?;
                }
                Ok(arg(1).parse().unwrap_or(1))
            }
            "zeros" => {
                let n: usize = arg(1).parse().unwrap_or(0);
                let Some(out) = io.stdout.as_mut() else {
                    return Ok(2);
                };
                let block = vec![0u8; 64 * 1024];
                let mut left = n;
                while left > 0 {
                    let k = left.min(block.len());
                    out.write_all(&block[..k]).await.map_err(io_err)?;
                    left -= k;
                }
                Ok(0)
            }
            "sizes" => {
                let (Some(mut resize), Some(out)) = (io.resize.take(), io.stdout.as_mut()) else {
                    return Err(Error::InvalidArgument("sizes needs a tty".into()));
                };
                while let Some(size) = resize.recv().await {
                    let line = format!("{}x{}\n", size.width, size.height);
                    out.write_all(line.as_bytes()).await.map_err(io_err)?;
                }
                Ok(0)
            }
            _ => {
                std::future::pending::<()>().await;
                Ok(0)
            }
        }
    }

    async fn check_attach(&self, _id: &ContainerId) -> Result<()> {
        Ok(())
    }

    async fn attach(&self, _id: &ContainerId, mut io: StreamIo) -> Result<()> {
        if let (Some(mut input), Some(mut output)) = (io.stdin.take(), io.stdout.take()) {
            let _ = tokio::io::copy(&mut input, &mut output).await;
        }
        Ok(())
    }

    async fn check_port_forward(&self, _id: &PodSandboxId) -> Result<()> {
        Ok(())
    }

    /// Port 1 refuses; any other port echoes upper-cased.
    async fn port_forward(&self, _id: &PodSandboxId, port: u16) -> Result<DuplexStream> {
        if port == 1 {
            return Err(Error::Unavailable("connection refused on port 1".into()));
        }
        let (ours, theirs) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(theirs);
            let mut buf = [0u8; 1024];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if w.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                    return;
                }
            }
            let _ = w.shutdown().await;
        });
        Ok(Box::pin(ours))
    }
}

async fn server() -> Arc<Server> {
    Server::bind(ServerOptions::default(), Arc::new(Script))
        .await
        .expect("bind streaming server")
}

fn streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Streams {
    Streams {
        stdin,
        stdout,
        stderr,
        tty,
    }
}

fn options(s: Streams) -> ExecOptions {
    ExecOptions {
        stdin: s.stdin,
        stdout: s.stdout,
        stderr: s.stderr,
        tty: s.tty,
        ..Default::default()
    }
}

fn exec_url(server: &Server, cmd: &[&str], s: Streams) -> String {
    let cmd = cmd.iter().map(|c| c.to_string()).collect();
    server
        .exec_url(&ContainerId::from("c1"), cmd, s)
        .expect("exec URL")
}

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn spdy_exec_cat_exit_codes_and_big_output() {
    let server = server().await;
    let pipes = streams(true, true, true, false);
    let mut session = super::exec(&exec_url(&server, &["cat"], pipes), options(pipes))
        .await
        .expect("session");
    assert_eq!(session.protocol(), Protocol::V4);
    session.write_stdin(b"hello").await.expect("stdin");
    session.close_stdin().await.expect("close");
    let out = tokio::time::timeout(LIMIT, session.output())
        .await
        .expect("in time")
        .expect("output");
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"hello"[..], 0));

    let outs = streams(false, true, true, false);
    let out = super::exec(&exec_url(&server, &["exit", "42"], outs), options(outs))
        .await
        .expect("session")
        .output()
        .await
        .expect("output");
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice(), out.exit_code),
        (&b"out"[..], &b"err"[..], 42)
    );

    // 3 MiB: far past the 64 KiB windows, without WINDOW_UPDATEs and with them.
    for window_updates in [false, true] {
        let opts = ExecOptions {
            spdy: SpdyConfig { window_updates },
            ..options(outs)
        };
        let url = exec_url(&server, &["zeros", "3145728"], outs);
        let out = tokio::time::timeout(LIMIT, async {
            super::exec(&url, opts).await?.output().await
        })
        .await
        .expect("in time")
        .expect("output");
        assert_eq!((out.stdout.len(), out.exit_code), (3 << 20, 0));
    }
}

#[tokio::test]
async fn spdy_tty_resizes_reach_the_backend() {
    let server = server().await;
    let tty = streams(true, true, false, true);
    let mut session = super::exec(&exec_url(&server, &["sizes"], tty), options(tty))
        .await
        .expect("session");
    session.resize(100, 30).await.expect("resize");
    session.resize(132, 43).await.expect("resize");
    let mut seen = String::new();
    while !seen.contains("132x43") {
        let chunk = tokio::time::timeout(LIMIT, session.read_stdout())
            .await
            .expect("in time")
            .expect("read")
            .expect("more output");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(seen, "100x30\n132x43\n");
}

#[tokio::test]
async fn websocket_v5_and_v4_exec() {
    let server = server().await;
    let pipes = streams(true, true, true, false);
    let mut session = super::exec_websocket(&exec_url(&server, &["cat"], pipes), options(pipes))
        .await
        .expect("session");
    assert_eq!(session.protocol(), Protocol::V5);
    session.write_stdin(b"over ws").await.expect("stdin");
    session.close_stdin().await.expect("close");
    let out = tokio::time::timeout(LIMIT, session.output())
        .await
        .expect("in time")
        .expect("output");
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"over ws"[..], 0));

    let outs = streams(false, true, true, false);
    let opts = ExecOptions {
        protocols: vec![Protocol::V4],
        ..options(outs)
    };
    let session = super::exec_websocket(&exec_url(&server, &["exit", "3"], outs), opts)
        .await
        .expect("session");
    assert_eq!(session.protocol(), Protocol::V4);
    let out = session.output().await.expect("output");
    assert_eq!((out.stderr.as_slice(), out.exit_code), (&b"err"[..], 3));
}

#[tokio::test]
async fn port_forward_parallel_requests_and_a_refusal() {
    let server = server().await;
    let url = server
        .port_forward_url(&PodSandboxId::from("p1"), vec![])
        .expect("URL");
    let pf = super::port_forward(&url, SpdyConfig::default())
        .await
        .expect("session");
    let (a, b) = tokio::join!(pf.open(80), pf.open(81));
    for (mut fwd, text) in [(a.expect("a"), "first"), (b.expect("b"), "second")] {
        fwd.io.write_all(text.as_bytes()).await.expect("write");
        fwd.io.shutdown().await.expect("half-close");
        let mut back = String::new();
        tokio::time::timeout(LIMIT, fwd.io.read_to_string(&mut back))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(back, text.to_uppercase());
        let err = tokio::time::timeout(LIMIT, fwd.error())
            .await
            .expect("in time");
        assert_eq!(err.expect("error stream"), None);
    }
    let refused = pf.open(1).await.expect("request to port 1");
    let text = tokio::time::timeout(LIMIT, refused.error())
        .await
        .expect("in time")
        .expect("error stream")
        .expect("an error");
    assert!(text.contains("refused"), "{text}");
    let mut again = pf.open(80).await.expect("after the refusal");
    again.io.write_all(b"still").await.expect("write");
    again.io.shutdown().await.expect("half-close");
    let mut back = String::new();
    again.io.read_to_string(&mut back).await.expect("read");
    assert_eq!(back, "STILL");
    pf.close().await;
}

#[tokio::test]
async fn bad_and_reused_tokens_and_dropped_sessions() {
    let server = server().await;
    let outs = streams(false, true, true, false);
    let bad = format!("{}/exec/not-a-token", server.base_url());
    assert!(matches!(
        super::exec(&bad, options(outs)).await,
        Err(Error::NotFound(_))
    ));
    let url = exec_url(&server, &["exit", "0"], outs);
    let out = super::exec(&url, options(outs))
        .await
        .expect("session")
        .output()
        .await
        .expect("output");
    assert_eq!(out.exit_code, 0);
    assert!(
        super::exec(&url, options(outs)).await.is_err(),
        "token reused"
    );

    let hang = exec_url(&server, &["hang"], outs);
    let session = super::exec(&hang, options(outs)).await.expect("session");
    assert!(server.active_connections() >= 1);
    drop(session);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while server.active_connections() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server kept a dropped session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
