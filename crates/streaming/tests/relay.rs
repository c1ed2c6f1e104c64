//! Relayed sessions through a two-level chain of real servers: an OUTER `Server` whose
//! backend calls `relay_exec` / `relay_attach` / `relay_port_forward` against URLs minted
//! by an INNER `Server`, whose backend is the fake of `common` (exec, attach) with
//! port-forward to real TCP ports on 127.0.0.1. The outer is driven with the crate's SPDY
//! client, as crictl would.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{Counters, Fake, WAIT};
use crimux_core::{
    ContainerId, DuplexStream, Error, ExecSpec, PodSandboxId, Result, StreamIo, StreamingBackend,
};
use crimux_streaming::client::{
    self, relay_attach, relay_exec, relay_port_forward, ExecOptions, Session, SpdyConfig,
};
use crimux_streaming::{Server, ServerOptions, Streams};

/// The inner crimux's backend: the common fake, and port-forward to real local ports.
struct Inner(Fake);

#[async_trait]
impl StreamingBackend for Inner {
    async fn check_exec(&self, _id: &ContainerId) -> Result<()> {
        Ok(())
    }
    async fn exec(&self, id: &ContainerId, spec: &ExecSpec, io: StreamIo) -> Result<i32> {
        self.0.exec(id, spec, io).await
    }
    async fn check_attach(&self, _id: &ContainerId) -> Result<()> {
        Ok(())
    }
    async fn attach(&self, id: &ContainerId, io: StreamIo) -> Result<()> {
        self.0.attach(id, io).await
    }
    async fn check_port_forward(&self, _id: &PodSandboxId) -> Result<()> {
        Ok(())
    }
    async fn port_forward(&self, _id: &PodSandboxId, port: u16) -> Result<DuplexStream> {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| Error::Unavailable(format!("connect to 127.0.0.1:{port}: {e}")))?;
        Ok(Box::pin(tcp))
    }
}

/// The outer crimux's backend: what a `kind = "cri"` backend does with the inner's URLs.
struct Outer(Arc<Server>);

fn streams_of(io: &StreamIo, tty: bool) -> Streams {
    Streams {
        stdin: io.stdin.is_some(),
        stdout: io.stdout.is_some(),
        stderr: io.stderr.is_some(),
        tty,
    }
}

#[async_trait]
impl StreamingBackend for Outer {
    async fn check_exec(&self, _id: &ContainerId) -> Result<()> {
        Ok(())
    }
    async fn exec(&self, id: &ContainerId, spec: &ExecSpec, io: StreamIo) -> Result<i32> {
        let url = self
            .0
            .exec_url(id, spec.cmd.clone(), streams_of(&io, spec.tty))?;
        relay_exec(&url, spec.tty, io).await
    }
    async fn check_attach(&self, _id: &ContainerId) -> Result<()> {
        Ok(())
    }
    async fn attach(&self, id: &ContainerId, io: StreamIo) -> Result<()> {
        let tty = io.resize.is_some();
        let url = self.0.attach_url(id, streams_of(&io, tty))?;
        relay_attach(&url, tty, io).await
    }
    async fn check_port_forward(&self, _id: &PodSandboxId) -> Result<()> {
        Ok(())
    }
    async fn port_forward(&self, id: &PodSandboxId, port: u16) -> Result<DuplexStream> {
        let url = self.0.port_forward_url(id, vec![port])?;
        relay_port_forward(&url, port).await
    }
}

struct Chain {
    outer: Arc<Server>,
    inner: Arc<Server>,
    counters: Arc<Counters>,
}

async fn chain() -> Chain {
    let counters = Arc::new(Counters::default());
    let fake = Inner(Fake {
        counters: counters.clone(),
    });
    let inner = Server::bind(ServerOptions::default(), Arc::new(fake))
        .await
        .expect("inner bind");
    let outer = Server::bind(ServerOptions::default(), Arc::new(Outer(inner.clone())))
        .await
        .expect("outer bind");
    Chain {
        outer,
        inner,
        counters,
    }
}

fn opts(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> ExecOptions {
    ExecOptions {
        stdin,
        stdout,
        stderr,
        tty,
        ..ExecOptions::default()
    }
}

impl Chain {
    /// An exec session on the outer server, with the same streams on both sides.
    async fn exec(&self, cmd: &[&str], o: ExecOptions) -> Session {
        let cmd = cmd.iter().map(|s| s.to_string()).collect();
        let streams = Streams {
            stdin: o.stdin,
            stdout: o.stdout,
            stderr: o.stderr,
            tty: o.tty,
        };
        let url = self
            .outer
            .exec_url(&"c1".into(), cmd, streams)
            .expect("exec url");
        client::exec(&url, o).await.expect("exec session")
    }
}

/// Waits until `cond` holds (panics after `WAIT`).
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn echo_exit_codes_and_stderr_pass_through() {
    let c = chain().await;
    let mut s = c.exec(&["echo"], opts(true, true, true, false)).await;
    s.write_stdin(b"hello ").await.expect("stdin");
    s.write_stdin(b"relay").await.expect("stdin");
    s.close_stdin().await.expect("stdin EOF");
    let out = tokio::time::timeout(WAIT, s.output())
        .await
        .expect("in time");
    let out = out.expect("output");
    assert_eq!(out.stdout, b"hello relay");
    assert!(out.stderr.is_empty());
    assert_eq!(out.exit_code, 0);

    // stdin stays open: the process's exit alone ends the session.
    let s = c.exec(&["exit", "42"], opts(true, true, true, false)).await;
    let out = tokio::time::timeout(WAIT, s.output())
        .await
        .expect("in time");
    let out = out.expect("output");
    assert_eq!(out.exit_code, 42);
    assert!(out.stdout.is_empty() && out.stderr.is_empty());

    let s = c
        .exec(&["stderr", "oops"], opts(false, true, true, false))
        .await;
    let out = s.output().await.expect("output");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops");
    assert!(out.stdout.is_empty());
    assert_eq!(out.exit_code, 3);

    // A backend failure in the inner crimux reaches the client with its message.
    let s = c.exec(&["fail"], opts(false, true, false, false)).await;
    let err = s.output().await.expect_err("failure status");
    assert!(err.to_string().contains("container c1 is gone"), "{err}");
    eventually("every inner session over", || {
        c.inner.active_connections() == 0
    })
    .await;
}

#[tokio::test]
async fn a_websocket_client_is_relayed_over_spdy() {
    let c = chain().await;
    let streams = Streams {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let url = c
        .outer
        .exec_url(&"c1".into(), vec!["echo".into()], streams)
        .expect("url");
    let mut s = client::exec_websocket(&url, opts(true, true, true, false))
        .await
        .expect("websocket session");
    assert_eq!(s.protocol(), client::Protocol::V5);
    s.write_stdin(b"over websocket").await.expect("stdin");
    s.close_stdin().await.expect("stdin EOF");
    let out = tokio::time::timeout(WAIT, s.output())
        .await
        .expect("in time");
    let out = out.expect("output");
    assert_eq!(out.stdout, b"over websocket");
    assert_eq!(out.exit_code, 0);

    let url = c
        .outer
        .exec_url(&"c1".into(), vec!["exit".into(), "42".into()], streams)
        .expect("url");
    let s = client::exec_websocket(&url, opts(true, true, true, false))
        .await
        .expect("websocket session");
    assert_eq!(s.output().await.expect("output").exit_code, 42);
}

#[tokio::test]
async fn a_megabyte_echoes_through_both_levels() {
    let c = chain().await;
    let mut s = c.exec(&["echo"], opts(true, true, false, false)).await;
    let mut stdout = s.take_stdout().expect("stdout");
    let sent: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let write = async {
        for chunk in sent.chunks(10_000) {
            s.write_stdin(chunk).await.expect("stdin");
        }
        s.close_stdin().await.expect("stdin EOF");
        s
    };
    let (s, got) = tokio::join!(write, stdout.read_to_end());
    assert_eq!(got.expect("stdout").len(), sent.len());
    assert_eq!(s.wait().await.expect("status"), 0);
}

#[tokio::test]
async fn tty_resizes_reach_the_inner_fake() {
    let c = chain().await;
    let mut s = c.exec(&["resize"], opts(true, true, false, true)).await;
    assert_eq!(s.protocol(), client::Protocol::V4);
    s.resize(80, 24).await.expect("resize");
    s.resize(120, 40).await.expect("resize");
    // Width 0 ends the fake's loop.
    s.resize(0, 1).await.expect("resize");
    let out = tokio::time::timeout(WAIT, s.output())
        .await
        .expect("in time");
    let out = out.expect("output");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "80x24\n120x40\n0x1\n");
    assert_eq!(out.exit_code, 0);
}

#[tokio::test]
async fn attach_relays_until_the_inner_stream_ends() {
    let c = chain().await;
    let streams = Streams {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let url = c.outer.attach_url(&"c1".into(), streams).expect("url");
    let mut s = client::attach(&url, opts(true, true, false, false))
        .await
        .expect("attach");
    s.write_stdin(b"attached").await.expect("stdin");
    s.close_stdin().await.expect("stdin EOF");
    let out = s.output().await.expect("output");
    assert_eq!(out.stdout, b"attached");
    assert_eq!(out.exit_code, 0);
}

#[tokio::test]
async fn a_client_that_goes_away_ends_the_inner_session() {
    let c = chain().await;
    let s = c.exec(&["hang"], opts(false, true, false, false)).await;
    eventually("the inner fake started", || {
        c.counters.started.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(c.counters.dropped.load(Ordering::SeqCst), 0);
    drop(s);
    eventually("the inner session dropped", || {
        c.counters.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually("no connection left", || {
        c.inner.active_connections() == 0 && c.outer.active_connections() == 0
    })
    .await;
}

#[tokio::test]
async fn a_slow_client_blocks_the_inner_writer() {
    const TOTAL: usize = 64 << 20;
    let c = chain().await;
    let size = TOTAL.to_string();
    let mut s = c
        .exec(&["flood", &size], opts(false, true, false, false))
        .await;
    // The client reads nothing: the inner fake's writes must stall well short of 64 MiB.
    let mut last = usize::MAX;
    let stalled = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = c.counters.flood_written.load(Ordering::SeqCst);
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let held = tokio::time::timeout(WAIT, stalled).await.expect("stalls");
    eprintln!("inner fake blocked after writing {held} bytes");
    // In flight: mostly the kernel's buffers of the two TCP hops (autotuned, ~10 MiB on
    // Linux loopback); the relay itself holds at most 16 frames and one chunk.
    assert!(held > 0 && held < TOTAL / 2, "{held} bytes in flight");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.counters.flood_written.load(Ordering::SeqCst), held);
    // Reading resumes the flow; everything arrives.
    let mut got = 0usize;
    while let Some(chunk) = s.read_stdout().await.expect("stdout") {
        got += chunk.len();
    }
    assert_eq!(got, TOTAL);
    assert_eq!(s.wait().await.expect("status"), 0);
}

/// A TCP echo server on 127.0.0.1; its port.
async fn echo_listener() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// A port nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn port_forward_relays_data_and_refusals() {
    let c = chain().await;
    let echo = echo_listener().await;
    let refused = closed_port().await;
    let url = c
        .outer
        .port_forward_url(&"p1".into(), vec![echo])
        .expect("url");
    let pf = client::port_forward(&url, SpdyConfig::default())
        .await
        .expect("port-forward");

    let mut f = pf.open(echo).await.expect("open");
    f.io.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    f.io.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"ping");
    f.io.write_all(b" and pong").await.expect("write");
    f.io.shutdown().await.expect("half-close");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, f.io.read_to_end(&mut rest))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(rest, b" and pong");
    assert_eq!(f.error().await.expect("error stream"), None);

    // The refusal inside the pod reaches the end client on its error stream...
    let f = pf.open(refused).await.expect("open");
    let text = tokio::time::timeout(WAIT, f.error())
        .await
        .expect("in time")
        .expect("error stream")
        .expect("a reported failure");
    assert!(
        text.contains(&format!("error forwarding port {refused} to pod p1")),
        "{text}"
    );
    assert!(text.contains("refused"), "{text}");

    // ...and the session goes on.
    let mut f = pf.open(echo).await.expect("open");
    f.io.write_all(b"again").await.expect("write");
    let mut buf = [0u8; 5];
    f.io.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"again");
    drop(f);
    drop(pf);
    eventually("no connection left", || {
        c.inner.active_connections() == 0 && c.outer.active_connections() == 0
    })
    .await;
}

#[tokio::test]
async fn a_refusal_is_an_io_error_for_the_relay_reader() {
    let c = chain().await;
    let refused = closed_port().await;
    let url = c
        .inner
        .port_forward_url(&"p1".into(), vec![refused])
        .expect("url");
    let mut stream = relay_port_forward(&url, refused).await.expect("relay");
    let mut buf = [0u8; 16];
    let err = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("in time")
        .expect_err("a refusal");
    assert!(err.to_string().contains("refused"), "{err}");
    // It sticks: later reads and writes fail the same way.
    assert!(stream.read(&mut buf).await.is_err());
    assert!(stream.write_all(b"x").await.is_err());
}

#[tokio::test]
async fn only_http_urls_are_relayed() {
    let io = || StreamIo {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
    };
    let url = "https://127.0.0.1:1/exec/abc";
    for err in [
        relay_exec(url, false, io()).await.expect_err("https"),
        relay_attach(url, false, io()).await.expect_err("https"),
        relay_port_forward(url, 80).await.err().expect("https"),
    ] {
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains(url) && m.contains("https")),
            "{err}"
        );
    }
}
