//! Port-forward over SPDY/3.1 (`portforward.k8s.io`), as kubelet serves it.
//!
//! Each forwarded connection is a pair of client streams carrying the same `requestID`
//! header: an `error` stream and a `data` stream, both naming the `port`. Once both are
//! open the backend connects to the port inside the pod and bytes are copied both ways. A
//! failure (connection refused, or the pod's connection failing mid-copy, which is how a
//! relayed refusal arrives) is written on that request's error stream and the session
//! goes on; requests run concurrently. Pairs left incomplete are dropped after the
//! stream creation timeout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::task::JoinSet;

use crimux_core::{PodSandboxId, StreamingBackend};
use crimux_spdy::upgrade::RequestHead;
use crimux_spdy::{Connection, Headers, RstStatus, Stream};

use crate::exec_spdy::{handshake, spdy_config, STREAM_TYPE};
use crate::protocol;
use crate::server::Shared;

const PORT_HEADER: &str = "port";
const REQUEST_ID_HEADER: &str = "requestid";
/// Copy buffer per direction per forwarded connection.
const COPY_BUFFER: usize = 32 * 1024;
/// Once one direction of a forwarded connection ended, how long the other may go on.
const LINGER: Duration = Duration::from_secs(1);
/// How often incomplete pairs are checked for expiry.
const SWEEP: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Pair {
    data: Option<Stream>,
    error: Option<Stream>,
    created: Option<Instant>,
}

pub(crate) async fn serve<IO>(
    shared: &Shared,
    mut io: IO,
    head: &RequestHead,
    sandbox: PodSandboxId,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if handshake(&mut io, head, protocol::SPDY_PORT_FORWARD)
        .await
        .is_none()
    {
        return;
    }
    let conn = match Connection::new(io, spdy_config(shared)) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "streaming: cannot start a SPDY session");
            return;
        }
    };
    let timeout = shared.options.stream_creation_timeout;
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut sweep = tokio::time::interval(SWEEP);
    loop {
        tokio::select! {
            accepted = conn.accept() => {
                let Some(stream) = accepted else { break };
                let Some((request_id, kind, _port)) = classify(&stream) else { continue };
                let _ = stream.reply(Headers::new(), false);
                let pair = pairs.entry(request_id.clone()).or_default();
                pair.created.get_or_insert_with(Instant::now);
                let slot = if kind == "data" { &mut pair.data } else { &mut pair.error };
                if slot.is_some() {
                    let msg = format!("error processing stream for request {request_id}: {kind} stream already assigned");
                    tracing::debug!(%msg, "streaming: port-forward");
                    if let Some(err) = pair.error.as_mut() {
                        let _ = err.write_all(msg.as_bytes()).await;
                    }
                    stream.reset(RstStatus::RefusedStream);
                    continue;
                }
                *slot = Some(stream);
                if pair.data.is_some() && pair.error.is_some() {
                    if let Some(Pair { data: Some(data), error: Some(error), .. }) = pairs.remove(&request_id) {
                        forwards.spawn(forward(shared.backend.clone(), sandbox.clone(), data, error));
                    }
                }
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
            _ = sweep.tick() => expire(&mut pairs, timeout).await,
        }
    }
    tracing::debug!(sandbox = %sandbox, reason = ?conn.close_reason(), "streaming: port-forward session over");
    // Dropping the set ends every forward still running (the backend closes its sockets).
    forwards.shutdown().await;
    conn.close().await;
}

/// The pair key, stream type and port of a new stream; refuses (resets) invalid ones.
fn classify(stream: &Stream) -> Option<(String, String, u16)> {
    let headers = stream.headers();
    let refuse = |why: String| {
        tracing::debug!(stream_id = stream.id(), %why, "streaming: refusing a port-forward stream");
        stream.reset(RstStatus::RefusedStream);
        None
    };
    let port = match headers.get(PORT_HEADER).map(str::parse::<u16>) {
        Some(Ok(p)) if p > 0 => p,
        Some(_) => return refuse(format!("bad port header {:?}", headers.get(PORT_HEADER))),
        None => return refuse("\"port\" header is required".into()),
    };
    let kind = headers.get(STREAM_TYPE).unwrap_or_default();
    if kind != "data" && kind != "error" {
        return refuse(format!("invalid stream type {kind:?}"));
    }
    // Old clients send no request id: the data stream follows its error stream (id + 2).
    let request_id = match headers.get(REQUEST_ID_HEADER) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ if kind == "data" => stream.id().saturating_sub(2).to_string(),
        _ => stream.id().to_string(),
    };
    Some((request_id, kind.to_string(), port))
}

/// Drops pairs whose second stream never came, telling the client on the error stream.
async fn expire(pairs: &mut HashMap<String, Pair>, timeout: Duration) {
    let now = Instant::now();
    let stale: Vec<String> = pairs
        .iter()
        .filter(|(_, p)| p.created.is_some_and(|c| now.duration_since(c) >= timeout))
        .map(|(id, _)| id.clone())
        .collect();
    for id in stale {
        if let Some(mut pair) = pairs.remove(&id) {
            if let Some(err) = pair.error.as_mut() {
                let msg = format!("timed out waiting for the streams of request {id}");
                let _ = tokio::time::timeout(SWEEP, async {
                    err.write_all(msg.as_bytes()).await?;
                    err.shutdown().await
                })
                .await;
            }
        }
    }
}

async fn forward(
    backend: std::sync::Arc<dyn StreamingBackend>,
    sandbox: PodSandboxId,
    data: Stream,
    mut error: Stream,
) {
    let port = data
        .headers()
        .get(PORT_HEADER)
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_default();
    let (failure, mut to_client) = match backend.port_forward(&sandbox, port).await {
        Ok(target) => {
            let (result, to_client) = copy_both_ways(data, target).await;
            let failure = match result {
                Ok(()) => None,
                Err(Broken::Client(e)) => {
                    tracing::debug!(sandbox = %sandbox, port, error = %e, "streaming: port-forward client side failed");
                    None
                }
                // The pod's connection broke (or, relayed, the inner crimux reported a
                // failure): the client learns it on the error stream, as for a refusal.
                Err(Broken::Pod(e)) => Some(e.to_string()),
            };
            (failure, to_client)
        }
        Err(e) => (Some(e.to_string()), tokio::io::split(data).1),
    };
    // The failure goes out before the data stream ends (one ordered connection), so a
    // client that sees the data end already has the reason.
    if let Some(e) = failure {
        let msg = format!("error forwarding port {port} to pod {sandbox}: {e}");
        tracing::info!(sandbox = %sandbox, port, error = %e, "streaming: port-forward failed");
        let _ = error.write_all(msg.as_bytes()).await;
    }
    let _ = to_client.shutdown().await;
    let _ = error.shutdown().await;
}

/// Which side of a forwarded connection failed.
#[derive(Debug)]
enum Broken {
    /// Reading from or writing to the client's data stream.
    Client(std::io::Error),
    /// Reading from or writing to the backend's connection into the pod.
    Pod(std::io::Error),
}

/// Copies both ways (bounded buffers, half-close passed on). Once one direction ends the
/// other gets [`LINGER`] to finish, as containerd does: a client that keeps its side open
/// after the pod closed the connection still sees the request end. A failure on either
/// side ends both directions at once; the client's data stream is then left open for the
/// caller to report the failure first. Returns the client's writing half.
async fn copy_both_ways<T>(data: Stream, target: T) -> (Result<(), Broken>, WriteHalf<Stream>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (mut from_client, mut to_client) = tokio::io::split(data);
    let (mut from_pod, mut to_pod) = tokio::io::split(target);
    let result = {
        let up = async {
            let r = copy(&mut from_client, &mut to_pod, Broken::Client, Broken::Pod).await;
            let _ = to_pod.shutdown().await;
            r
        };
        let down = async {
            let r = copy(&mut from_pod, &mut to_client, Broken::Pod, Broken::Client).await;
            if r.is_ok() {
                let _ = to_client.shutdown().await;
            }
            r
        };
        tokio::pin!(up, down);
        tokio::select! {
            r = &mut up => match r {
                Ok(()) => linger(down).await,
                Err(e) => Err(e),
            },
            r = &mut down => match r {
                Ok(()) => linger(up).await,
                Err(e) => Err(e),
            },
        }
    };
    (result, to_client)
}

/// Lets the other direction finish for at most [`LINGER`].
async fn linger<F>(rest: std::pin::Pin<&mut F>) -> Result<(), Broken>
where
    F: std::future::Future<Output = Result<(), Broken>>,
{
    tokio::time::timeout(LINGER, rest).await.unwrap_or(Ok(()))
}

/// Copies until `from` ends, then flushes; errors tagged by the side they came from.
async fn copy<R, W>(
    from: &mut R,
    to: &mut W,
    read_side: fn(std::io::Error) -> Broken,
    write_side: fn(std::io::Error) -> Broken,
) -> Result<(), Broken>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = from.read(&mut buf).await.map_err(read_side)?;
        if n == 0 {
            return to.flush().await.map_err(write_side);
        }
        to.write_all(&buf[..n]).await.map_err(write_side)?;
    }
}
