//! Turning a configured containerd address into a gRPC channel.
//!
//! The channel is lazy: tonic reconnects on the next request after the connection drops, so
//! a containerd restart costs the requests in flight, not the backend. The platform-specific
//! transports (unix sockets, Windows named pipes) live in `platform/transport.rs`.

use std::net::IpAddr;
use std::time::Duration;

use crimux_core::{Error, Result};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

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
                    let endpoint = endpoint(format!("https://{authority}"))?
                        .tls_config(tls_config(tls, host)?)
                        .map_err(|e| Error::InvalidArgument(format!("TLS for {address}: {e}")))?;
                    Ok(endpoint.connect_lazy())
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

fn endpoint(uri: String) -> Result<Endpoint> {
    Endpoint::from_shared(uri.clone())
        .map(|e| {
            e.connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_while_idle(true)
        })
        .map_err(|e| Error::InvalidArgument(format!("containerd endpoint {uri}: {e}")))
}

fn tls_config(tls: &TlsConfig, host: &str) -> Result<ClientTlsConfig> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Error::InvalidArgument(format!("reading TLS {what} {}: {e}", path.display()))
        })
    };
    let ca = read("CA", &tls.ca)?;
    let cert = read("certificate", &tls.cert)?;
    let key = read("key", &tls.key)?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key))
        .domain_name(tls.server_name.clone().unwrap_or_else(|| host.to_string())))
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
}
