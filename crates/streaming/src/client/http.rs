//! The HTTP/1.1 half of a streaming session: parse the URL an Exec, Attach or PortForward
//! RPC returned, connect, send the upgrade request and read the server's answer. After a
//! `101 Switching Protocols` the connection carries SPDY frames (or WebSocket frames).

use std::time::Duration;

use bytes::BytesMut;
use crimux_core::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header both ends use to agree on the Kubernetes sub-protocol.
pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";

/// Largest response head accepted (status line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Largest error body kept from a refused upgrade.
const MAX_BODY: usize = 4 * 1024;
/// How long connecting and the upgrade exchange may take together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// An `http://host:port/path` URL, split for dialling and for the request line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `host:port` to dial (IPv6 hosts keep their brackets).
    pub authority: String,
    /// Path and query, as sent on the request line.
    pub path: String,
}

impl Target {
    /// Parses a streaming URL. Only plain `http` is supported: crimux's tests and bench run
    /// the server without TLS.
    pub fn parse(url: &str) -> Result<Target, Error> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("streaming URL {url:?}: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            other => {
                return Err(Error::InvalidArgument(format!(
                    "streaming URL {url:?}: scheme {other:?} is not supported (only http)"
                )))
            }
        }
        let authority = uri
            .authority()
            .ok_or_else(|| Error::InvalidArgument(format!("streaming URL {url:?} has no host")))?;
        let port = authority.port_u16().unwrap_or(80);
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_string());
        Ok(Target {
            authority: format!("{}:{port}", authority.host()),
            path,
        })
    }
}

/// The parsed head of the server's response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// First value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when a header's comma-separated values contain `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Connects to `target`, with the handshake timeout.
pub async fn dial(target: &Target) -> Result<TcpStream, Error> {
    let connect = TcpStream::connect(target.authority.as_str());
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
        .await
        .map_err(|_| Error::DeadlineExceeded(format!("connect to {}", target.authority)))?
        .map_err(|e| Error::Unavailable(format!("connect to {}: {e}", target.authority)))?;
    // Interactive sessions send single keystrokes: do not batch them.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Sends a `POST` asking to upgrade to SPDY/3.1 with `protocols` offered (in preference
/// order, one header line each, as client-go does) and reads the answer. On `101` returns
/// the protocol the server picked (empty if it named none) and the bytes that followed the
/// head (already SPDY). Any other status is an error named after the status.
pub async fn upgrade_spdy(
    io: &mut TcpStream,
    target: &Target,
    protocols: &[&str],
) -> Result<(String, BytesMut), Error> {
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: crimux-streaming-client\r\n\
         Content-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n",
        target.path, target.authority
    );
    for p in protocols {
        req.push_str(&format!("{PROTOCOL_HEADER}: {p}\r\n"));
    }
    req.push_str("\r\n");
    let exchange = async {
        io.write_all(req.as_bytes())
            .await
            .map_err(|e| Error::Unavailable(format!("send upgrade request: {e}")))?;
        read_response(io).await
    };
    let (head, rest) = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| Error::DeadlineExceeded("upgrade handshake".into()))??;
    if head.status != 101 {
        let body = read_body(io, &head, rest).await;
        return Err(refused(&head, &body));
    }
    if !head.has_token("upgrade", "SPDY/3.1") || !head.has_token("connection", "upgrade") {
        return Err(Error::Internal(format!(
            "101 response does not upgrade to SPDY/3.1: {:?}",
            head.headers
        )));
    }
    let protocol = head.header(PROTOCOL_HEADER).unwrap_or_default().to_string();
    if !protocol.is_empty() && !protocols.contains(&protocol.as_str()) {
        return Err(Error::Internal(format!(
            "server picked protocol {protocol:?}, not one of {protocols:?}"
        )));
    }
    Ok((protocol, rest))
}

/// Maps a refused upgrade to an error of the matching kind, with the server's text.
pub fn refused(head: &ResponseHead, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(body);
    let msg = format!(
        "upgrade refused: {} {}: {}",
        head.status,
        head.reason,
        text.trim()
    );
    match head.status {
        400 => Error::InvalidArgument(msg),
        401 => Error::Unauthenticated(msg),
        403 => Error::PermissionDenied(msg),
        404 | 410 => Error::NotFound(msg),
        429 | 503 => Error::Unavailable(msg),
        _ => Error::Internal(msg),
    }
}

/// Reads until the end of the response head; returns it and what came after it.
pub async fn read_response<R: AsyncReadExt + Unpin>(
    io: &mut R,
) -> Result<(ResponseHead, BytesMut), Error> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some(end) = find_head_end(&buf) {
            let head = parse_response_head(&buf[..end])?;
            let rest = buf.split_off(end);
            return Ok((head, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(Error::Internal(format!(
                "response head exceeds {MAX_HEAD} bytes"
            )));
        }
        let n = io
            .read_buf(&mut buf)
            .await
            .map_err(|e| Error::Unavailable(format!("read upgrade response: {e}")))?;
        if n == 0 {
            return Err(Error::Unavailable(
                "connection closed before the upgrade response".into(),
            ));
        }
    }
}

/// The body of a refused upgrade, up to [`MAX_BODY`] bytes and one second: only for the
/// error message.
async fn read_body(io: &mut TcpStream, head: &ResponseHead, mut buf: BytesMut) -> Vec<u8> {
    let want = head
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(MAX_BODY)
        .min(MAX_BODY);
    let fill = async {
        while buf.len() < want {
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), fill).await;
    buf.truncate(want);
    buf.to_vec()
}

/// Index just past `\r\n\r\n`, if the buffer holds a whole head.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses `HTTP/1.1 101 Switching Protocols\r\nName: value\r\n...\r\n\r\n`.
pub fn parse_response_head(raw: &[u8]) -> Result<ResponseHead, Error> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| Error::Internal("response head is not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(Error::Internal(format!(
            "not an HTTP/1.x response: {status_line:?}"
        )));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Error::Internal(format!("bad status line {status_line:?}")))?;
    let reason = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| Error::Internal(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(ResponseHead {
        status,
        reason,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:3456/exec/abc?x=1").expect("parse");
        assert_eq!(t.authority, "127.0.0.1:3456");
        assert_eq!(t.path, "/exec/abc?x=1");
        let t = Target::parse("http://[::1]:80/pf/t").expect("parse");
        assert_eq!(t.authority, "[::1]:80");
        let t = Target::parse("http://localhost").expect("parse");
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("localhost:80", "/")
        );
        assert!(matches!(
            Target::parse("https://h/exec/x"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            Target::parse("::"),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn response_heads() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                    Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n";
        let head = parse_response_head(raw).expect("parse");
        assert_eq!(head.status, 101);
        assert_eq!(head.reason, "Switching Protocols");
        assert!(head.has_token("connection", "upgrade"));
        assert_eq!(
            head.header("x-stream-protocol-version"),
            Some("v4.channel.k8s.io")
        );
        assert!(parse_response_head(b"SPDY 1\r\n\r\n").is_err());
        assert!(parse_response_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n").is_err());
    }

    #[test]
    fn refusals_map_to_kinds() {
        let head = |status| ResponseHead {
            status,
            reason: "X".into(),
            headers: vec![],
        };
        assert!(matches!(refused(&head(404), b"gone"), Error::NotFound(m) if m.contains("gone")));
        assert!(matches!(
            refused(&head(400), b""),
            Error::InvalidArgument(_)
        ));
        assert!(matches!(
            refused(&head(403), b""),
            Error::PermissionDenied(_)
        ));
        assert!(matches!(refused(&head(500), b""), Error::Internal(_)));
    }

    #[tokio::test]
    async fn head_and_leftover_bytes() {
        let data: &[u8] = b"HTTP/1.1 101 OK\r\nUpgrade: SPDY/3.1\r\n\r\n\x80\x03";
        let mut io = data;
        let (head, rest) = read_response(&mut io).await.expect("read");
        assert_eq!(head.status, 101);
        assert_eq!(&rest[..], b"\x80\x03");
        let mut short: &[u8] = b"HTTP/1.1 101";
        assert!(matches!(
            read_response(&mut short).await,
            Err(Error::Unavailable(_))
        ));
    }
}
