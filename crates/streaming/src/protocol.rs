//! The remotecommand protocol above the transport: versions, the status written on the
//! error stream, and terminal-size messages on the resize stream.
//!
//! Versions (`X-Stream-Protocol-Version` over SPDY, the WebSocket subprotocol otherwise):
//! - `channel.k8s.io` (v1) and `v2.channel.k8s.io`: the error stream carries the failure
//!   message as plain text, nothing on success; no resize stream.
//! - `v3.channel.k8s.io`: adds the resize stream.
//! - `v4.channel.k8s.io`: the error stream carries a JSON `metav1.Status`, and a non-zero
//!   exit is reported as reason `NonZeroExitCode` with an `ExitCode` cause (how kubectl and
//!   crictl learn the exit code).
//! - `v5.channel.k8s.io`: v4 plus, over WebSocket, a close signal per channel.

use serde::Serialize;

use crimux_core::{Error, TermSize};

pub const V1: &str = "channel.k8s.io";
pub const V2: &str = "v2.channel.k8s.io";
pub const V3: &str = "v3.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const V5: &str = "v5.channel.k8s.io";
pub const PORT_FORWARD_V1: &str = "portforward.k8s.io";

/// The headers of the SPDY handshake.
pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";
pub const ACCEPTED_HEADER: &str = "X-Accepted-Stream-Protocol-Versions";

/// What SPDY exec/attach accept, newest first. v5 over SPDY behaves as v4 (SPDY already
/// half-closes streams), as in kubelet.
pub const SPDY_REMOTECOMMAND: &[&str] = &[V5, V4, V3, V2, V1];
/// What WebSocket exec/attach accept (binary framing only).
pub const WEBSOCKET_REMOTECOMMAND: &[&str] = &[V5, V4, V1];
pub const SPDY_PORT_FORWARD: &[&str] = &[PORT_FORWARD_V1];

/// A negotiated remotecommand version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Version {
    pub fn from_name(name: &str) -> Option<Version> {
        Some(match name {
            V1 | "" => Version::V1,
            V2 => Version::V2,
            V3 => Version::V3,
            V4 => Version::V4,
            V5 => Version::V5,
            _ => return None,
        })
    }

    /// v3 and later have a resize stream.
    pub fn supports_resize(self) -> bool {
        self >= Version::V3
    }

    /// v4 and later write a JSON status on the error stream.
    pub fn json_status(self) -> bool {
        self >= Version::V4
    }
}

/// The client's offers (repeated and/or comma-separated header values) in its order.
pub fn offers<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Picks the first of the client's offers that the server supports, as Kubernetes'
/// `httpstream.Handshake` does (client preference wins).
pub fn negotiate<'a>(offers: &[String], supported: &[&'a str]) -> Option<&'a str> {
    offers
        .iter()
        .find_map(|o| supported.iter().copied().find(|s| s == o))
}

/// How a session ended, as the error stream reports it.
#[derive(Debug)]
pub enum Outcome {
    /// The process exited with this code (0 is success); attach reports 0.
    Exited { code: i32, cmd: Vec<String> },
    /// The backend failed.
    Failed(Error),
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: String,
}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

/// `metav1.Status`, with the fields remotecommand uses, in Go's field order.
#[derive(Serialize)]
struct Status {
    metadata: Empty,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

impl Outcome {
    fn status(&self) -> Status {
        match self {
            Outcome::Exited { code: 0, .. } => Status {
                metadata: Empty {},
                status: "Success",
                message: None,
                reason: None,
                details: None,
                code: None,
            },
            Outcome::Exited { code, cmd } => Status {
                metadata: Empty {},
                status: "Failure",
                message: Some(format!(
                    "command terminated with non-zero exit code: error executing command \
                     {cmd:?}, exit code {code}"
                )),
                reason: Some("NonZeroExitCode"),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: Some("ExitCode"),
                        message: code.to_string(),
                    }],
                }),
                code: None,
            },
            Outcome::Failed(err) => {
                let cause = format!("error executing command in container: {err}");
                Status {
                    metadata: Empty {},
                    status: "Failure",
                    message: Some(format!("Internal error occurred: {cause}")),
                    reason: Some("InternalError"),
                    details: Some(Details {
                        causes: vec![Cause {
                            reason: None,
                            message: cause,
                        }],
                    }),
                    code: Some(500),
                }
            }
        }
    }

    /// The bytes for the error stream under `version`; empty means write nothing.
    pub fn encode(&self, version: Version) -> Vec<u8> {
        let status = self.status();
        if version.json_status() {
            // Serializing plain structs of strings cannot fail; an empty body is harmless.
            return serde_json::to_vec(&status).unwrap_or_default();
        }
        status.message.map(String::into_bytes).unwrap_or_default()
    }
}

/// `remotecommand.TerminalSize` as the client encodes it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireSize {
    width: u16,
    height: u16,
}

/// Largest pending (incomplete) resize message kept while waiting for its end.
pub const MAX_RESIZE_MESSAGE: usize = 4096;

/// Decodes the concatenated JSON objects of a resize stream, across reads.
#[derive(Debug, Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    /// Adds bytes and returns every complete size; an error means the stream is garbage
    /// (kubelet stops reading resizes then).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<TermSize>, String> {
        self.buf.extend_from_slice(bytes);
        let mut sizes = Vec::new();
        let mut iter = serde_json::Deserializer::from_slice(&self.buf).into_iter::<WireSize>();
        let mut consumed = 0;
        loop {
            match iter.next() {
                Some(Ok(s)) => {
                    consumed = iter.byte_offset();
                    sizes.push(TermSize {
                        width: s.width,
                        height: s.height,
                    });
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return Err(format!("bad resize message: {e}")),
                None => {
                    consumed = iter.byte_offset();
                    break;
                }
            }
        }
        self.buf.drain(..consumed);
        if self.buf.len() > MAX_RESIZE_MESSAGE {
            return Err(format!(
                "resize message longer than {MAX_RESIZE_MESSAGE} bytes"
            ));
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_client_order() {
        let o = offers(["v4.channel.k8s.io", "v3.channel.k8s.io, channel.k8s.io"]);
        assert_eq!(o.len(), 3);
        assert_eq!(negotiate(&o, SPDY_REMOTECOMMAND), Some(V4));
        let o = offers(["v2.channel.k8s.io,v4.channel.k8s.io"]);
        assert_eq!(negotiate(&o, SPDY_REMOTECOMMAND), Some(V2));
        assert_eq!(
            negotiate(&offers(["v9.channel.k8s.io"]), SPDY_REMOTECOMMAND),
            None
        );
        let o = offers(["base64.channel.k8s.io", "v4.channel.k8s.io"]);
        assert_eq!(negotiate(&o, WEBSOCKET_REMOTECOMMAND), Some(V4));
        assert_eq!(Version::from_name(""), Some(Version::V1));
        assert!(!Version::V2.supports_resize() && Version::V3.supports_resize());
        assert!(!Version::V3.json_status() && Version::V5.json_status());
    }

    fn text(o: &Outcome, v: Version) -> String {
        String::from_utf8(o.encode(v)).unwrap()
    }

    #[test]
    fn status_json() {
        let ok = Outcome::Exited {
            code: 0,
            cmd: vec!["true".into()],
        };
        assert_eq!(
            text(&ok, Version::V4),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(text(&ok, Version::V2), "");
        let failed = Outcome::Exited {
            code: 42,
            cmd: vec!["sh".into(), "-c".into(), "exit 42".into()],
        };
        let v: serde_json::Value = serde_json::from_slice(&failed.encode(Version::V4)).unwrap();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "42");
        assert!(v["message"]
            .as_str()
            .unwrap()
            .starts_with("command terminated with non-zero exit code: "));
        assert!(text(&failed, Version::V1).contains("exit code 42"));
        let err = Outcome::Failed(Error::NotFound("container c1 is gone".into()));
        let v: serde_json::Value = serde_json::from_slice(&err.encode(Version::V5)).unwrap();
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["code"], 500);
        assert!(text(&err, Version::V3).contains("container c1 is gone"));
    }

    #[test]
    fn resize_messages_across_reads() {
        let mut d = ResizeDecoder::default();
        assert_eq!(
            d.push(br#"{"Width":80,"Height":24}{"Width":1"#).unwrap(),
            vec![TermSize {
                width: 80,
                height: 24
            }]
        );
        assert_eq!(d.push(b"00,").unwrap(), vec![]);
        assert_eq!(
            d.push(b"\"Height\":50}\n{\"Width\":7,\"Height\":8}\n")
                .unwrap(),
            vec![
                TermSize {
                    width: 100,
                    height: 50
                },
                TermSize {
                    width: 7,
                    height: 8
                }
            ]
        );
        assert!(d.buf.is_empty() || d.buf.iter().all(|b| b.is_ascii_whitespace()));
        assert!(ResizeDecoder::default().push(b"nope").is_err());
        assert!(ResizeDecoder::default()
            .push(br#"{"Width":"x","Height":1}"#)
            .is_err());
        assert!(ResizeDecoder::default()
            .push(br#"{"Width":70000,"Height":1}"#)
            .is_err());
        assert!(ResizeDecoder::default()
            .push(
                &vec![b' '; 10]
                    .into_iter()
                    .chain(b"{\"Width\":".iter().copied())
                    .chain(std::iter::repeat_n(b'1', 5000))
                    .collect::<Vec<u8>>()
            )
            .is_err());
    }
}
