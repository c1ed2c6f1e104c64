//! Port-forward over SPDY/3.1 (`portforward.k8s.io`), as client-go's port forwarder does
//! it: one connection, and per forwarded connection a request id with an `error` stream
//! (closed by the client at once: only the server writes to it) and a `data` stream, both
//! carrying `port` and `requestID` headers.

use std::sync::atomic::{AtomicU32, Ordering};

use crimux_core::Error;
use crimux_spdy::Headers;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use super::http::{dial, upgrade_spdy, Target};
use super::remotecommand::STREAM_TYPE;
use super::spdy::{self, Connection, Incoming, Writer};

/// The one port-forward sub-protocol.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// Bytes buffered between the caller's end of a forwarded stream and the pumps.
const PIPE: usize = 64 * 1024;

/// A port-forward session: any number of forwarded connections, to any ports of the pod.
pub struct PortForward {
    conn: Connection,
    next_request: AtomicU32,
}

/// One forwarded connection. `io` is the caller's end (read what the pod's port sends,
/// write what it should receive, shut down to half-close); [`Forwarded::error`] tells
/// whether the server reported a failure (connection refused in the pod, ...).
pub struct Forwarded {
    pub io: DuplexStream,
    pub request_id: u32,
    error: JoinHandle<Result<Vec<u8>, Error>>,
}

impl Forwarded {
    /// Waits until the server ends the request's error stream; `Ok(None)` when it stayed
    /// empty, `Ok(Some(text))` when the server reported a failure.
    pub async fn error(self) -> Result<Option<String>, Error> {
        let text = self
            .error
            .await
            .map_err(|e| Error::Internal(format!("error stream reader: {e}")))??;
        Ok((!text.is_empty()).then(|| String::from_utf8_lossy(&text).into_owned()))
    }
}

/// Connects to the URL the PortForward RPC returned.
pub async fn port_forward(url: &str, config: spdy::Config) -> Result<PortForward, Error> {
    let target = Target::parse(url)?;
    let mut io = dial(&target).await?;
    let (picked, leftover) = upgrade_spdy(&mut io, &target, &[PORT_FORWARD_PROTOCOL]).await?;
    if picked != PORT_FORWARD_PROTOCOL {
        return Err(Error::Internal(format!(
            "server picked protocol {picked:?}, not {PORT_FORWARD_PROTOCOL}"
        )));
    }
    Ok(PortForward {
        conn: Connection::start(io, leftover, config)?,
        next_request: AtomicU32::new(0),
    })
}

impl PortForward {
    /// Opens a forwarded connection to `port` inside the pod.
    pub async fn open(&self, port: u16) -> Result<Forwarded, Error> {
        let (io, request_id, mut error_in) = self.open_raw(port).await?;
        let error = tokio::spawn(async move { error_in.read_to_end().await });
        Ok(Forwarded {
            io,
            request_id,
            error,
        })
    }

    /// Opens a forwarded connection and hands back its error stream unread (the relay
    /// polls it next to the data, see `relay_forward`).
    pub(crate) async fn open_raw(&self, port: u16) -> Result<(DuplexStream, u32, Incoming), Error> {
        let request_id = self.next_request.fetch_add(1, Ordering::SeqCst);
        let headers = |kind: &str| {
            let mut h = Headers::new();
            h.insert(STREAM_TYPE, kind);
            h.insert("port", port.to_string());
            h.insert("requestID", request_id.to_string());
            h
        };
        let mut error = self.conn.open(headers("error")).await?;
        error.writer.close().await?;
        let data = self.conn.open(headers("data")).await?;
        let (mine, theirs) = tokio::io::duplex(PIPE);
        let (read, write) = tokio::io::split(mine);
        tokio::spawn(pump_up(read, data.writer));
        tokio::spawn(pump_down(data.incoming, write));
        Ok((theirs, request_id, error.incoming))
    }

    /// Sends GOAWAY and closes the connection once queued frames are out.
    pub async fn close(self) {
        self.conn.close().await;
    }
}

/// Caller → pod: DATA frames, then FIN when the caller shuts its write side down.
async fn pump_up(mut from: tokio::io::ReadHalf<DuplexStream>, mut to: Writer) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = to.close().await;
}

/// Pod → caller: the data stream's chunks, then EOF on the caller's read side.
async fn pump_down(mut from: Incoming, mut to: tokio::io::WriteHalf<DuplexStream>) {
    while let Ok(Some(chunk)) = from.recv().await {
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}
