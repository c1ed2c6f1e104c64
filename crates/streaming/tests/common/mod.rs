//! Test support: a fake `StreamingBackend` whose "commands" exercise the protocol paths,
//! and a minimal raw SPDY/3.1 client built on the spdy crate's codec (A3's client in
//! `crimux_streaming::client` covers the full client side).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crimux_core::{
    ContainerId, DuplexStream, Error, ExecSpec, PodSandboxId, Result, StreamIo, StreamingBackend,
};
use crimux_spdy::{Frame, FrameCodec, Headers, Limits, RstStatus};
use crimux_streaming::{Server, ServerOptions};

pub const WAIT: Duration = Duration::from_secs(20);

/// Counts sessions whose backend future was dropped before finishing.
#[derive(Default)]
pub struct Counters {
    pub dropped: AtomicUsize,
    pub started: AtomicUsize,
    pub flood_written: AtomicUsize,
}

struct DropGuard(Arc<Counters>, bool);
impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Commands: `echo` (stdin → stdout), `exit N`, `stderr TEXT`, `resize` (one line per
/// size until stdin ends), `hang`, `flood BYTES`, `fail`.
pub struct Fake {
    pub counters: Arc<Counters>,
}

#[async_trait]
impl StreamingBackend for Fake {
    async fn check_exec(&self, _id: &ContainerId) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, id: &ContainerId, spec: &ExecSpec, mut io: StreamIo) -> Result<i32> {
        self.counters.started.fetch_add(1, Ordering::SeqCst);
        let mut guard = DropGuard(self.counters.clone(), false);
        let arg = spec.cmd.get(1).cloned().unwrap_or_default();
        let code = match spec.cmd[0].as_str() {
            "echo" => {
                let (Some(mut i), Some(mut o)) = (io.stdin.take(), io.stdout.take()) else {
                    return Err(Error::InvalidArgument("echo needs stdin and stdout".into()));
                };
                tokio::io::copy(&mut i, &mut o)
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?;
                0
            }
            "exit" => arg.parse().unwrap_or(1),
            "stderr" => {
                let mut e = io.stderr.take().expect("stderr requested");
                e.write_all(arg.as_bytes()).await.ok();
                3
            }
            "resize" => {
                let mut rx = io.resize.take().expect("resize channel");
                let mut o = io.stdout.take().expect("stdout");
                while let Some(size) = rx.recv().await {
                    let line = format!("{}x{}\n", size.width, size.height);
                    o.write_all(line.as_bytes()).await.ok();
                    if size.width == 0 {
                        break;
                    }
                }
                0
            }
            "hang" => std::future::pending().await,
            // `slow MS`: waits, then like `echo` (a busy backend starting the process late).
            "slow" => {
                tokio::time::sleep(Duration::from_millis(arg.parse().unwrap_or(0))).await;
                let (Some(mut i), Some(mut o)) = (io.stdin.take(), io.stdout.take()) else {
                    return Err(Error::InvalidArgument("slow needs stdin and stdout".into()));
                };
                tokio::io::copy(&mut i, &mut o)
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?;
                (arg.parse::<i32>().unwrap_or(0)) % 5
            }
            "flood" => {
                let total: usize = arg.parse().unwrap_or(0);
                let mut o = io.stdout.take().expect("stdout");
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len());
                    o.write_all(&chunk[..n])
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    self.counters.flood_written.fetch_add(n, Ordering::SeqCst);
                    left -= n;
                }
                0
            }
            "fail" => return Err(Error::NotFound(format!("container {id} is gone"))),
            other => return Err(Error::InvalidArgument(format!("unknown command {other}"))),
        };
        guard.1 = true;
        Ok(code)
    }

    async fn check_attach(&self, _id: &ContainerId) -> Result<()> {
        Ok(())
    }

    async fn attach(&self, id: &ContainerId, io: StreamIo) -> Result<()> {
        let spec = ExecSpec {
            cmd: vec!["echo".into()],
            tty: false,
        };
        self.exec(id, &spec, io).await.map(|_| ())
    }

    async fn check_port_forward(&self, _id: &PodSandboxId) -> Result<()> {
        Ok(())
    }

    /// Port 9 refuses; any other port answers each read with `port <n>: <bytes>`; port 7
    /// answers once, then closes (an HTTP/1.0 server); port 13 sends `partial` and then
    /// fails (a pod connection reset mid-session).
    async fn port_forward(&self, _id: &PodSandboxId, port: u16) -> Result<DuplexStream> {
        if port == 9 {
            return Err(Error::Unavailable(
                "connect to 127.0.0.1:9: connection refused".into(),
            ));
        }
        if port == 13 {
            return Ok(Box::pin(Breaking { sent: false }));
        }
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            loop {
                match theirs.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut reply = format!("port {port}: ").into_bytes();
                        reply.extend_from_slice(&buf[..n]);
                        if theirs.write_all(&reply).await.is_err() || port == 7 {
                            break;
                        }
                    }
                }
            }
            let _ = theirs.shutdown().await;
        });
        Ok(Box::pin(ours))
    }
}

pub async fn server_with(options: ServerOptions) -> (Arc<Server>, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let fake = Arc::new(Fake {
        counters: counters.clone(),
    });
    let server = Server::bind(options, fake).await.expect("bind");
    (server, counters)
}

pub async fn server() -> (Arc<Server>, Arc<Counters>) {
    server_with(ServerOptions::default()).await
}

/// `http://host:port/path` → (`host:port`, `/path`).
pub fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .expect("http url");
    let slash = rest.find('/').expect("path");
    (rest[..slash].to_string(), rest[slash..].to_string())
}

/// Any client transport (TCP, TLS).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Sends a raw request; returns the response head and the still-open connection.
pub async fn request(url: &str, extra: &str) -> (String, TcpStream) {
    let (addr, _) = split_url(url);
    let tcp = TcpStream::connect(&addr).await.expect("connect");
    request_on(tcp, url, extra).await
}

/// Sends a raw request on `io`.
pub async fn request_on<T: Io>(mut tcp: T, url: &str, extra: &str) -> (String, T) {
    let (addr, path) = split_url(url);
    let head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
    tcp.write_all(head.as_bytes()).await.expect("send request");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
            .await
            .expect("response in time")
            .expect("read response");
        if n == 0 {
            break;
        }
        got.push(byte[0]);
    }
    (String::from_utf8_lossy(&got).into_owned(), tcp)
}

/// True when the server closed the connection (EOF or reset) within `WAIT`.
pub async fn closed<T: Io>(tcp: &mut T) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A SPDY/3.1 client peer that records what the server sends, per stream.
pub struct SpdyClient {
    pub tcp: Box<dyn Io>,
    codec: FrameCodec,
    buf: BytesMut,
    pub data: HashMap<u32, Vec<u8>>,
    pub fin: HashSet<u32>,
    pub replied: HashSet<u32>,
    pub reset: HashMap<u32, RstStatus>,
    pub goaway: bool,
    pub eof: bool,
}

impl SpdyClient {
    /// Upgrades at `url` offering `protocols`; returns the 101 head and the client.
    pub async fn connect(url: &str, protocols: &[&str]) -> (String, SpdyClient) {
        let (addr, _) = split_url(url);
        let tcp = TcpStream::connect(&addr).await.expect("connect");
        Self::connect_on(Box::new(tcp), url, protocols).await
    }

    /// Upgrades on an already connected transport.
    pub async fn connect_on(
        io: Box<dyn Io>,
        url: &str,
        protocols: &[&str],
    ) -> (String, SpdyClient) {
        let mut extra = String::from("Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n");
        for p in protocols {
            extra.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
        }
        let (head, tcp) = request_on(io, url, &extra).await;
        (
            head,
            SpdyClient {
                tcp,
                codec: FrameCodec::new(Limits::default()).expect("codec"),
                buf: BytesMut::new(),
                data: HashMap::new(),
                fin: HashSet::new(),
                replied: HashSet::new(),
                reset: HashMap::new(),
                goaway: false,
                eof: false,
            },
        )
    }

    pub async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.codec.encode(&frame, &mut out).expect("encode");
        self.tcp.write_all(&out).await.expect("send frame");
    }

    pub async fn open(&mut self, id: u32, headers: &[(&str, &str)]) {
        let headers: Headers = headers.iter().copied().collect();
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers,
        })
        .await;
    }

    pub async fn data(&mut self, id: u32, bytes: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id: id,
            fin,
            data: Bytes::copy_from_slice(bytes),
        })
        .await;
    }

    /// Reads and records one frame; false at EOF.
    pub async fn pump(&mut self) -> bool {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).expect("decode") {
                match frame {
                    Frame::Data {
                        stream_id,
                        fin,
                        data,
                    } => {
                        self.data
                            .entry(stream_id)
                            .or_default()
                            .extend_from_slice(&data);
                        if fin {
                            self.fin.insert(stream_id);
                        }
                    }
                    Frame::SynReply { stream_id, fin, .. } => {
                        self.replied.insert(stream_id);
                        if fin {
                            self.fin.insert(stream_id);
                        }
                    }
                    Frame::RstStream { stream_id, status } => {
                        self.reset.insert(stream_id, status);
                    }
                    Frame::GoAway { .. } => self.goaway = true,
                    Frame::Ping { id } => self.send(Frame::Ping { id }).await,
                    _ => {}
                }
                return true;
            }
            match self.tcp.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => {
                    self.eof = true;
                    return false;
                }
                Ok(_) => {}
            }
        }
    }

    /// Pumps until `done` holds (panics after `WAIT`).
    pub async fn until(&mut self, done: impl Fn(&SpdyClient) -> bool) {
        let wait = async {
            while !done(self) {
                if !self.pump().await {
                    break;
                }
            }
        };
        if tokio::time::timeout(WAIT, wait).await.is_err() {
            let data: Vec<(u32, String)> = self
                .data
                .iter()
                .map(|(k, v)| (*k, String::from_utf8_lossy(v).into_owned()))
                .collect();
            panic!(
                "condition not met in time: fin {:?} reset {:?} data {data:?}",
                self.fin, self.reset
            );
        }
    }

    pub fn text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.data.get(&id).map(Vec::as_slice).unwrap_or_default())
            .into_owned()
    }
}

/// A pod connection that delivers `partial` and then fails on read; writes are accepted.
struct Breaking {
    sent: bool,
}

impl tokio::io::AsyncRead for Breaking {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.sent {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "pod connection reset",
            )));
        }
        self.sent = true;
        buf.put_slice(b"partial");
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Breaking {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
