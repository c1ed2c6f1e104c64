//! Turning a configured containerd address into a gRPC channel.
//!
//! The channel is lazy: tonic reconnects on the next request after the connection drops, so
//! a containerd restart costs the requests in flight, not the backend. The platform-specific
//! transports (unix sockets, Windows named pipes) live in `platform/transport.rs`.
//!
//! Mutual TLS is done here rather than by tonic's `ClientTlsConfig`, for one reason: with
//! TLS 1.3 the server judges the client certificate only after the client has finished its
//! handshake, so a refused certificate used to surface as "operation was canceled" on the
//! first call. The connector below waits for the server's first bytes (a gRPC server sends
//! its HTTP/2 SETTINGS at once) and turns a refusal into an error that says so.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crimux_core::{Error, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::platform::transport;
use crate::TlsConfig;

/// Where a containerd daemon listens, parsed from its configured address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `unix:///run/containerd/containerd.sock` (or a bare absolute path).
    Unix(String),
    /// `tcp://host:port`.
    Tcp { host: String, port: u16 },
    /// `npipe:////./pipe/containerd-containerd`, as a Windows pipe path `\\.\pipe\...`.
    NamedPipe(String),
}

impl Address {
    /// Parses `unix://`, `tcp://` and `npipe://` addresses; anything else is a config error.
    pub fn parse(address: &str) -> Result<Address> {
        let bad =
            |why: &str| Error::InvalidArgument(format!("containerd address {address:?}: {why}"));
        if let Some(path) = address.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            return Ok(Address::Unix(path.to_string()));
        }
        if address.starts_with('/') {
            return Ok(Address::Unix(address.to_string()));
        }
        if let Some(rest) = address.strip_prefix("tcp://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing :port"))?;
            let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad("missing host"));
            }
            return Ok(Address::Tcp {
                host: host.to_string(),
                port,
            });
        }
        if let Some(path) = address.strip_prefix("npipe://") {
            if path.is_empty() {
                return Err(bad("empty pipe path"));
            }
            return Ok(Address::NamedPipe(path.replace('/', "\\")));
        }
        Err(bad("expected unix://, tcp:// or npipe://"))
    }

    fn is_loopback(&self) -> bool {
        match self {
            Address::Tcp { host, .. } => {
                host.eq_ignore_ascii_case("localhost")
                    || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            _ => false,
        }
    }
}

/// Builds a lazily connecting channel for `address`. TCP needs mutual TLS unless the
/// operator said `insecure` and the address is loopback: the containerd API is root on the
/// node, so it never crosses a network in the clear.
pub fn channel(address: &str, tls: Option<&TlsConfig>, insecure: bool) -> Result<Channel> {
    let parsed = Address::parse(address)?;
    match parsed {
        // The URI is ignored by the connector; it only has to be valid.
        Address::Unix(path) => {
            transport::unix_channel(endpoint("http://[::]:50051".into())?, address, path)
        }
        Address::Tcp { ref host, port } => {
            let authority = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            match tls {
                Some(tls) => {
                    let connector = TlsDialer::new(tls, host, authority.clone(), address)?;
                    // The connector does TLS; the URI only has to be valid.
                    let endpoint = endpoint(format!("http://{authority}"))?;
                    Ok(endpoint.connect_with_connector_lazy(tower::service_fn(
                        move |_: tonic::transport::Uri| {
                            let connector = connector.clone();
                            async move { connector.dial().await.map(hyper_util::rt::TokioIo::new) }
                        },
                    )))
                }
                None if insecure && parsed.is_loopback() => {
                    Ok(endpoint(format!("http://{authority}"))?.connect_lazy())
                }
                None => Err(Error::InvalidArgument(format!(
                    "containerd address {address}: tcp needs mutual TLS (tls.ca, tls.cert, \
                     tls.key), or insecure = true on a loopback address"
                ))),
            }
        }
        Address::NamedPipe(path) => {
            transport::pipe_channel(endpoint("http://[::]:50051".into())?, address, path)
        }
    }
}

/// HTTP/2 pings find a dead connection to a remote delegate. containerd keeps gRPC-Go's
/// default enforcement (at most one ping per 5 minutes, none without an active call): a
/// client that pings more often gets GOAWAY `too_many_pings`, which cut every call in
/// flight — a long exec's Wait, the event stream — after about two minutes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(330);

fn endpoint(uri: String) -> Result<Endpoint> {
    Endpoint::from_shared(uri.clone())
        .map(|e| {
            e.connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(Duration::from_secs(20))
                .keep_alive_while_idle(false)
        })
        .map_err(|e| Error::InvalidArgument(format!("containerd endpoint {uri}: {e}")))
}

/// How long a new TLS connection waits for the server's first bytes before handing the
/// stream to HTTP/2 anyway (a server that does not speak first costs this once per
/// connection; containerd's gRPC server speaks first).
const FIRST_BYTES_WAIT: Duration = Duration::from_secs(2);

/// Dials `host:port` and does the mutual-TLS handshake with crimux's client certificate.
#[derive(Clone)]
struct TlsDialer {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    /// `host:port` to connect to.
    authority: String,
    /// The configured address, for messages.
    address: String,
}

impl TlsDialer {
    fn new(tls: &TlsConfig, host: &str, authority: String, address: &str) -> Result<TlsDialer> {
        let bad = |what: String| Error::InvalidArgument(format!("TLS for {address}: {what}"));
        let pems = |what: &str, path: &std::path::Path| {
            let text = std::fs::read(path).map_err(|e| {
                Error::InvalidArgument(format!("reading TLS {what} {}: {e}", path.display()))
            })?;
            let certs = CertificateDer::pem_slice_iter(&text)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("{what} {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(bad(format!(
                    "{what} {} holds no PEM certificate",
                    path.display()
                )));
            }
            Ok(certs)
        };
        let mut roots = RootCertStore::empty();
        for ca in pems("CA", &tls.ca)? {
            roots
                .add(ca)
                .map_err(|e| bad(format!("CA {}: {e}", tls.ca.display())))?;
        }
        let chain = pems("certificate", &tls.cert)?;
        let key_pem = std::fs::read(&tls.key).map_err(|e| {
            Error::InvalidArgument(format!("reading TLS key {}: {e}", tls.key.display()))
        })?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| bad(format!("key {}: {e}", tls.key.display())))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad(format!("certificate and key: {e}")))?;
        // gRPC servers (grpc-go >= 1.67) insist on ALPN h2.
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = tls.server_name.clone().unwrap_or_else(|| host.to_string());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| bad(format!("server name {name:?}: {e}")))?;
        Ok(TlsDialer {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            authority,
            address: address.to_string(),
        })
    }

    /// TCP connect, TLS handshake, then the server's verdict on our certificate.
    async fn dial(&self) -> io::Result<Replayed<TlsStream<TcpStream>>> {
        let tcp = TcpStream::connect(&self.authority).await?;
        tcp.set_nodelay(true)?;
        let mut tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| self.tls_error(&e, false))?;
        let mut first = vec![0u8; 16 * 1024];
        match tokio::time::timeout(FIRST_BYTES_WAIT, tls.read(&mut first)).await {
            Err(_waited) => first.clear(),
            Ok(Ok(0)) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!(
                        "TLS: {} closed the connection right after the handshake; it \
                         probably refused crimux's client certificate (tls.cert must be \
                         signed by a CA the server trusts)",
                        self.address
                    ),
                ));
            }
            Ok(Ok(n)) => first.truncate(n),
            Ok(Err(e)) => return Err(self.tls_error(&e, true)),
        }
        Ok(Replayed {
            inner: tls,
            head: first,
            at: 0,
        })
    }

    /// A TLS failure, phrased with what the operator should check.
    fn tls_error(&self, e: &io::Error, after_handshake: bool) -> io::Error {
        let text = e.to_string();
        let hint = if after_handshake || text.contains("alert") {
            "; the server refused crimux's client certificate (tls.cert and tls.key must be \
             signed by a CA the server trusts)"
        } else if text.contains("certificate") {
            "; the server's certificate does not check against tls.ca (or tls.server_name)"
        } else {
            ""
        };
        io::Error::new(e.kind(), format!("TLS with {}: {text}{hint}", self.address))
    }
}

/// A stream that first hands back bytes already read from it.
struct Replayed<S> {
    inner: S,
    head: Vec<u8>,
    at: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.head.len() {
            let n = buf.remaining().min(self.head.len() - self.at);
            let from = self.at;
            buf.put_slice(&self.head[from..from + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        let cases: [(&str, Option<Address>); 9] = [
            (
                "unix:///run/containerd/containerd.sock",
                Some(Address::Unix("/run/containerd/containerd.sock".into())),
            ),
            ("/run/c.sock", Some(Address::Unix("/run/c.sock".into()))),
            (
                "tcp://127.0.0.1:1234",
                Some(Address::Tcp {
                    host: "127.0.0.1".into(),
                    port: 1234,
                }),
            ),
            (
                "tcp://[::1]:1234",
                Some(Address::Tcp {
                    host: "::1".into(),
                    port: 1234,
                }),
            ),
            (
                "npipe:////./pipe/containerd-containerd",
                Some(Address::NamedPipe(r"\\.\pipe\containerd-containerd".into())),
            ),
            ("unix://", None),
            ("tcp://host", None),
            ("tcp://host:99999", None),
            ("http://host:1", None),
        ];
        for (input, want) in cases {
            match (Address::parse(input), want) {
                (Ok(got), Some(want)) => assert_eq!(got, want, "{input}"),
                (Err(e), None) => assert_eq!(e.code(), tonic::Code::InvalidArgument, "{input}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[tokio::test]
    async fn plain_tcp_only_on_loopback_when_insecure() {
        assert!(channel("tcp://127.0.0.1:1", None, true).is_ok());
        assert!(channel("tcp://localhost:1", None, true).is_ok());
        for (addr, insecure) in [("tcp://10.0.0.1:1", true), ("tcp://127.0.0.1:1", false)] {
            let err = channel(addr, None, insecure).expect_err(addr);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{addr}");
        }
    }

    #[tokio::test]
    async fn unreadable_or_empty_tls_files_are_config_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let missing = dir.path().join("missing.pem");
        for (ca, want) in [
            (&missing, "reading TLS CA"),
            (&empty, "holds no PEM certificate"),
        ] {
            let tls = TlsConfig {
                ca: ca.clone(),
                cert: empty.clone(),
                key: empty.clone(),
                server_name: None,
            };
            let err = channel("tcp://127.0.0.1:1", Some(&tls), false).expect_err("bad TLS files");
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
            assert!(err.to_string().contains(want), "{err}");
        }
    }
}
