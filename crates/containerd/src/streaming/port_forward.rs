//! Port-forward: a TCP connection to `localhost:<port>` inside a pod's network namespace,
//! as containerd's CRI makes it on Linux.
//!
//! The socket is created by a short-lived OS thread that joined the pod's pinned network
//! namespace (`crimux_cni::NetNs::run_in`); a socket belongs to the namespace it was
//! created in for its whole life, so it is handed back and connected from tokio like any
//! other, while no tokio worker ever changes namespace. A host-network pod has no
//! namespace of its own: its localhost is the host's.
//!
//! Only a backend on this very host can do this: a delegate reached over TCP (a WSL2
//! containerd) has its namespaces on another kernel, and is refused with
//! FailedPrecondition.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crimux_cni::NetNs;
use crimux_core::streaming::DuplexStream;
use crimux_core::{Error, PodSandboxId, Result};
use tokio::net::{TcpSocket, TcpStream};

use crate::backend::Inner;
use crate::runtime::host::is_local;
use crate::runtime::task::{self, TaskStatus};
use crate::sandbox::record::{load_sandbox, SandboxRecord};

/// How long connecting to a port in the pod may take (a full accept backlog drops SYNs).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The sandbox's record, if port-forwarding into it can start now: it exists (NotFound),
/// its pause runs and its backend is on this host (FailedPrecondition).
pub(super) async fn check(inner: &Inner, id: &PodSandboxId) -> Result<SandboxRecord> {
    let record = load_sandbox(inner, id).await?;
    match task::state(inner, id.as_str()).await? {
        Some(s) if s.status == TaskStatus::Running && s.pid != 0 => {}
        _ => {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {id} is not ready"
            )))
        }
    }
    if !is_local(inner) {
        return Err(Error::FailedPrecondition(format!(
            "port-forward into pod sandbox {id}: backend {} is not a local Linux daemon (it \
             is reached over TCP or runs another OS), so crimux cannot enter the pod's \
             network namespace from here",
            inner.name
        )));
    }
    Ok(record)
}

pub(super) async fn port_forward(
    inner: &Inner,
    id: &PodSandboxId,
    port: u16,
) -> Result<DuplexStream> {
    if port == 0 {
        return Err(Error::InvalidArgument(format!(
            "port-forward into pod sandbox {id}: port 0"
        )));
    }
    let record = check(inner, id).await?;
    let sockets = match record.netns_path {
        Some(path) => sockets_in(path).await?,
        None => sockets(),
    };
    let stream = connect(sockets, port)
        .await
        .map_err(|e| e.context(format!("port-forward into pod sandbox {id}")))?;
    tracing::debug!(backend = %inner.name, sandbox = %id, port, "port-forward connected");
    Ok(Box::pin(stream))
}

/// Unconnected IPv4 and IPv6 sockets in the calling thread's network namespace; a family
/// the namespace lacks is left out.
fn sockets() -> Vec<(SocketAddr, TcpSocket)> {
    let mut out = Vec::new();
    if let Ok(s) = TcpSocket::new_v4() {
        out.push((SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), s));
    }
    if let Ok(s) = TcpSocket::new_v6() {
        out.push((SocketAddr::from((Ipv6Addr::LOCALHOST, 0)), s));
    }
    out
}

/// [`sockets`], created inside the namespace pinned at `path`.
async fn sockets_in(path: PathBuf) -> Result<Vec<(SocketAddr, TcpSocket)>> {
    tokio::task::spawn_blocking(move || NetNs::open(&path)?.run_in(sockets))
        .await
        .map_err(|e| Error::Internal(format!("network namespace worker: {e}")))?
}

/// Connects to `port` on localhost, IPv4 first (as containerd does), then IPv6.
async fn connect(sockets: Vec<(SocketAddr, TcpSocket)>, port: u16) -> Result<TcpStream> {
    if sockets.is_empty() {
        return Err(Error::Internal("no TCP socket could be created".into()));
    }
    let mut refused = None;
    for (mut addr, socket) in sockets {
        addr.set_port(port);
        match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => refused = Some(e),
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "connecting to port {port} timed out after {CONNECT_TIMEOUT:?}"
                )))
            }
        }
    }
    let e = refused.map(|e| e.to_string()).unwrap_or_default();
    Err(Error::FailedPrecondition(format!(
        "connection refused on port {port} ({e})"
    )))
}
