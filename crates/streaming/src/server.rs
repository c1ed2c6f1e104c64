//! The streaming server: a TCP (optionally TLS) listener, the token store behind the
//! Exec/Attach/PortForward URLs, and one task per connection.
//!
//! A connection carries exactly one request: its head is read (bounded in size and time),
//! the token in its path is consumed, and the connection is upgraded to SPDY/3.1 or
//! WebSocket for the session the token names. Anything wrong with one connection ends that
//! connection only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crimux_core::{ContainerId, Error, ExecSpec, PodSandboxId, Result, StreamingBackend};

use crate::http::{self, HeadError};
use crate::session::Command;
use crate::tokens::{Pending, Streams, TokenStore};
use crate::{exec_spdy, portforward, tls, websocket};

/// The certificate and key (PEM files) the server presents when TLS is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How the server listens and what it tolerates. `Default` is kubelet's behaviour on
/// 127.0.0.1 with any free port.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// IP address to listen on (`127.0.0.1`, `::1`, `0.0.0.0`...).
    pub address: String,
    /// TCP port; 0 picks a free one (see [`Server::base_url`]).
    pub port: u16,
    pub tls: Option<TlsFiles>,
    /// A session without traffic in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// How long a client has, after the upgrade, to open the streams it asked for.
    pub stream_creation_timeout: Duration,
    /// How long a URL stays valid.
    pub token_ttl: Duration,
    /// URLs handed out and not yet used, at most.
    pub max_tokens: usize,
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
    /// Largest HTTP request head accepted (larger: 400).
    pub max_head_len: usize,
    /// Time allowed for the TLS handshake and the request head.
    pub head_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            address: "127.0.0.1".into(),
            port: 0,
            tls: None,
            idle_timeout: Duration::from_secs(4 * 60 * 60),
            stream_creation_timeout: Duration::from_secs(30),
            token_ttl: Duration::from_secs(60),
            max_tokens: 1024,
            max_connections: 4096,
            max_head_len: 16 * 1024,
            head_timeout: Duration::from_secs(30),
        }
    }
}

/// What every connection task needs.
pub(crate) struct Shared {
    pub backend: Arc<dyn StreamingBackend>,
    pub options: ServerOptions,
    pub tokens: TokenStore,
    limit: Arc<Semaphore>,
}

/// The running streaming server. Dropping it (or [`Server::shutdown`]) stops it.
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    base_url: String,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl Server {
    /// Binds the listener and starts serving on the current tokio runtime.
    pub async fn bind(
        options: ServerOptions,
        backend: Arc<dyn StreamingBackend>,
    ) -> Result<Arc<Server>> {
        let ip: std::net::IpAddr = options.address.parse().map_err(|_| {
            Error::InvalidArgument(format!(
                "streaming: address {:?} is not an IP address",
                options.address
            ))
        })?;
        let acceptor = match &options.tls {
            Some(files) => Some(tls::acceptor(files)?),
            None => None,
        };
        let listener = TcpListener::bind(SocketAddr::new(ip, options.port))
            .await
            .map_err(|e| {
                Error::Unavailable(format!(
                    "streaming: cannot listen on {}: {e}",
                    SocketAddr::new(ip, options.port)
                ))
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("streaming: listener address: {e}")))?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{local_addr}");
        let shared = Arc::new(Shared {
            backend,
            tokens: TokenStore::new(options.token_ttl, options.max_tokens),
            limit: Arc::new(Semaphore::new(options.max_connections)),
            options,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), acceptor, stopped));
        tracing::info!(%base_url, "streaming server listening");
        Ok(Arc::new(Server {
            shared,
            local_addr,
            base_url,
            stop,
            task: Mutex::new(Some(task)),
        }))
    }

    /// `http(s)://<address>:<port>`, with the port actually bound.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A URL for running `cmd` in `container` with `streams`.
    pub fn exec_url(
        &self,
        container: &ContainerId,
        cmd: Vec<String>,
        streams: Streams,
    ) -> Result<String> {
        streams.validate("Exec")?;
        if cmd.is_empty() {
            return Err(Error::InvalidArgument("Exec: cmd must not be empty".into()));
        }
        self.url(Pending::Exec {
            container: container.clone(),
            spec: ExecSpec {
                cmd,
                tty: streams.tty,
            },
            streams,
        })
    }

    /// A URL for attaching `streams` to the main process of `container`.
    pub fn attach_url(&self, container: &ContainerId, streams: Streams) -> Result<String> {
        streams.validate("Attach")?;
        self.url(Pending::Attach {
            container: container.clone(),
            streams,
        })
    }

    /// A URL for forwarding ports into `sandbox` (clients name the port per stream).
    pub fn port_forward_url(&self, sandbox: &PodSandboxId, ports: Vec<u16>) -> Result<String> {
        self.url(Pending::PortForward {
            sandbox: sandbox.clone(),
            ports,
        })
    }

    fn url(&self, pending: Pending) -> Result<String> {
        let kind = pending.kind();
        let token = self.shared.tokens.insert(pending)?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }

    /// URLs handed out, neither used nor expired.
    pub fn outstanding_tokens(&self) -> usize {
        self.shared.tokens.outstanding()
    }

    /// Connections being served now.
    pub fn active_connections(&self) -> usize {
        self.shared.options.max_connections - self.shared.limit.available_permits()
    }

    /// Stops accepting, ends every session (their backend calls are dropped) and waits.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let permit = shared.limit.clone().try_acquire_owned().ok();
                    sessions.spawn(connection(shared.clone(), tcp, peer, acceptor.clone(), permit));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "streaming: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    sessions.shutdown().await;
    tracing::info!("streaming server stopped");
}

async fn connection(
    shared: Arc<Shared>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    permit: Option<OwnedSemaphorePermit>,
) {
    let Some(_permit) = permit else {
        tracing::warn!(%peer, "streaming: too many connections");
        http::respond(
            &mut tcp,
            503,
            "Service Unavailable",
            &[],
            "too many connections",
        )
        .await;
        return;
    };
    let _ = tcp.set_nodelay(true);
    match acceptor {
        None => serve(&shared, tcp, peer).await,
        Some(acceptor) => {
            match tokio::time::timeout(shared.options.head_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => serve(&shared, tls, peer).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "streaming: TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "streaming: TLS handshake timed out"),
            }
        }
    }
}

/// Reads the request, consumes its token and runs the session it names.
async fn serve<IO>(shared: &Shared, mut io: IO, peer: SocketAddr)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let opts = &shared.options;
    let (head, rest) = match http::read_head(&mut io, opts.max_head_len, opts.head_timeout).await {
        Ok(read) => read,
        Err(HeadError::Malformed(reason)) => {
            tracing::debug!(%peer, %reason, "streaming: bad request");
            http::respond(&mut io, 400, "Bad Request", &[], &reason).await;
            return;
        }
        Err(HeadError::Gone(reason)) => {
            tracing::debug!(%peer, %reason, "streaming: no request");
            return;
        }
    };
    let mut parts = head.path().split('/');
    let (Some(""), Some(kind), Some(token), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        http::respond(&mut io, 404, "Not Found", &[], "not found").await;
        return;
    };
    let pending = shared.tokens.consume(token).filter(|p| p.kind() == kind);
    let Some(pending) = pending else {
        tracing::debug!(%peer, kind, "streaming: unknown, used or expired token");
        http::respond(&mut io, 404, "Not Found", &[], "not found").await;
        return;
    };
    if head.method != "GET" && head.method != "POST" {
        http::respond(&mut io, 405, "Method Not Allowed", &[], "use GET or POST").await;
        return;
    }
    let io = http::Prefixed::new(rest, io);
    match pending {
        Pending::PortForward { sandbox, .. } => {
            if !head.wants_spdy() {
                let mut io = io;
                let msg = "port-forward needs an Upgrade: SPDY/3.1 request";
                http::respond(&mut io, 400, "Bad Request", &[], msg).await;
                return;
            }
            tracing::debug!(%peer, sandbox = %sandbox, "streaming: port-forward session");
            portforward::serve(shared, io, &head, sandbox).await;
        }
        Pending::Exec {
            container,
            spec,
            streams,
        } => {
            let cmd = Command::exec(container, spec, streams);
            command(shared, io, &head, cmd, peer).await;
        }
        Pending::Attach { container, streams } => {
            let cmd = Command::attach(container, streams);
            command(shared, io, &head, cmd, peer).await;
        }
    }
}

async fn command<IO>(
    shared: &Shared,
    mut io: http::Prefixed<IO>,
    head: &crimux_spdy::upgrade::RequestHead,
    cmd: Command,
    peer: SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The query says what the client asks for; the token decides (as in kubelet).
    let asked = |name| http::query_param(head, name).unwrap_or("-");
    tracing::debug!(
        %peer, session = %cmd, granted = ?cmd.streams,
        input = asked("input"), output = asked("output"), error = asked("error"), tty = asked("tty"),
        "streaming: session"
    );
    if websocket::is_upgrade(head) {
        websocket::serve(shared, io, head, cmd).await;
    } else if head.wants_spdy() {
        exec_spdy::serve(shared, io, head, cmd).await;
    } else {
        let msg = "expected an Upgrade: SPDY/3.1 or websocket request";
        http::respond(&mut io, 400, "Bad Request", &[], msg).await;
    }
}
