//! The HTTP/1.1 side of the handshake: parse the client's request head and
//! answer `101 Switching Protocols` with `Upgrade: SPDY/3.1`, after which
//! both ends speak SPDY framing on the raw connection.
//!
//! Kubernetes clients offer sub-protocols (`v4.channel.k8s.io`, ...) in
//! `X-Stream-Protocol-Version`, repeated and/or comma-separated; the server
//! echoes the one it picked.

use crate::error::{Error, Result};

/// Default cap on a request head (request line + headers + blank line).
pub const DEFAULT_MAX_HEAD: usize = 16 * 1024;

/// The header naming the Kubernetes stream sub-protocol.
pub const STREAM_PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";

/// A parsed HTTP/1.1 request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// Path plus query string, as sent.
    pub target: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// True when the client asks to upgrade to SPDY/3.1.
    pub fn wants_spdy(&self) -> bool {
        let upgrade = self
            .header_all("upgrade")
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("SPDY/3.1"));
        let connection = self
            .header_all("connection")
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("upgrade"));
        upgrade && connection
    }
}

/// Parses a request head from the start of `buf`.
/// `Ok(None)`: incomplete. `Ok(Some((head, n)))`: `n` bytes were the head;
/// anything after them is already SPDY. Errors for malformed or oversized heads.
pub fn parse_request_head(buf: &[u8], max_len: usize) -> Result<Option<(RequestHead, usize)>> {
    let Some(end) = find_head_end(buf) else {
        if buf.len() > max_len {
            return Err(Error::Protocol(format!(
                "HTTP request head exceeds {max_len} bytes"
            )));
        }
        return Ok(None);
    };
    if end > max_len {
        return Err(Error::Protocol(format!(
            "HTTP request head exceeds {max_len} bytes"
        )));
    }
    let text = std::str::from_utf8(&buf[..end])
        .map_err(|_| Error::Protocol("HTTP request head is not UTF-8".into()))?;
    let mut lines = text
        .split("\r\n")
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Protocol(format!(
            "bad request line {request_line:?}"
        )));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Error::Protocol(format!("bad method {method:?}")));
    }
    if !target.starts_with('/') {
        return Err(Error::Protocol(format!("bad request target {target:?}")));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(Error::Protocol(format!(
            "unsupported HTTP version {version:?}"
        )));
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Error::Protocol(format!("bad header line {line:?}")));
        };
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Error::Protocol(format!("bad header name {name:?}")));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Some((
        RequestHead {
            method: method.to_string(),
            target: target.to_string(),
            headers,
        },
        end,
    )))
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Picks the first protocol in `server_preference` that the client offered
/// in any of its (repeated, comma-separated) `X-Stream-Protocol-Version` values.
pub fn negotiate_protocol<'a, I, S>(
    client_offers: I,
    server_preference: &[&'a str],
) -> Option<&'a str>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let offered: Vec<String> = client_offers
        .into_iter()
        .flat_map(|v| {
            v.as_ref()
                .split(',')
                .map(|p| p.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect();
    server_preference
        .iter()
        .copied()
        .find(|want| offered.iter().any(|o| o == want))
}

/// The `101 Switching Protocols` response, with the chosen sub-protocol.
pub fn switching_protocols_response(protocol: Option<&str>) -> Vec<u8> {
    let mut out = String::from(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n",
    );
    if let Some(p) = protocol {
        out.push_str(STREAM_PROTOCOL_HEADER);
        out.push_str(": ");
        out.push_str(p);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"POST /exec/abc?command=sh&stdin=1 HTTP/1.1\r\nHost: x\r\n\
Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\
X-Stream-Protocol-Version: v3.channel.k8s.io, v2.channel.k8s.io\r\n\r\n\x80\x03";

    #[test]
    fn parses_head_and_leaves_spdy_bytes() {
        let (head, n) = parse_request_head(REQ, DEFAULT_MAX_HEAD).unwrap().unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.path(), "/exec/abc");
        assert_eq!(head.query(), Some("command=sh&stdin=1"));
        assert_eq!(head.header("host"), Some("x"));
        assert!(head.wants_spdy());
        assert_eq!(&REQ[n..], b"\x80\x03");
        let offers: Vec<&str> = head.header_all(STREAM_PROTOCOL_HEADER).collect();
        assert_eq!(offers.len(), 2);
        let picked = negotiate_protocol(
            offers,
            &[
                "v5.channel.k8s.io",
                "v2.channel.k8s.io",
                "v4.channel.k8s.io",
            ],
        );
        assert_eq!(picked, Some("v2.channel.k8s.io"));
    }

    #[test]
    fn incomplete_and_oversized_heads() {
        assert!(parse_request_head(&REQ[..20], DEFAULT_MAX_HEAD)
            .unwrap()
            .is_none());
        assert!(parse_request_head(&REQ[..20], 10).is_err());
        assert!(parse_request_head(REQ, 30).is_err());
        assert!(parse_request_head(&[b'a'; 100], 50).is_err());
    }

    #[test]
    fn malformed_heads_are_errors() {
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/2\r\n\r\n",
            b"GET noslash HTTP/1.1\r\n\r\n",
            b"G@T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad name: v\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n",
        ] {
            assert!(
                parse_request_head(bad, DEFAULT_MAX_HEAD).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn negotiation_and_response() {
        assert_eq!(negotiate_protocol(["a, b", "c"], &["c", "a"]), Some("c"));
        assert_eq!(negotiate_protocol(["a"], &["b"]), None);
        assert_eq!(negotiate_protocol(Vec::<String>::new(), &["b"]), None);
        let resp =
            String::from_utf8(switching_protocols_response(Some("v4.channel.k8s.io"))).unwrap();
        assert_eq!(
            resp,
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
        );
        assert!(!String::from_utf8(switching_protocols_response(None))
            .unwrap()
            .contains("X-Stream"));
    }
}
