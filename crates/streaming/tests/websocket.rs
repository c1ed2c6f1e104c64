//! remotecommand over WebSocket (v5 and v4 channel protocols) against the real server and a
//! fake backend, with a minimal frame-level client.

mod common;

use std::collections::HashMap;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{closed, request, server, WAIT};
use crimux_streaming::Streams;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

struct Ws {
    tcp: TcpStream,
    /// Payloads per channel, in order.
    channels: HashMap<u8, Vec<u8>>,
    /// Close signals received (v5).
    closed_channels: Vec<u8>,
    close_frame: Option<Vec<u8>>,
    first_message: Option<Vec<u8>>,
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

impl Ws {
    async fn connect(url: &str, protocols: &str) -> (String, Ws) {
        let extra = format!(
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Protocol: {protocols}\r\n"
        );
        let url = url.to_string();
        let (addr, path) = common::split_url(&url);
        let _ = addr;
        // GET is required for WebSocket.
        let (head, tcp) = request_get(&url, &path, &extra).await;
        (
            head,
            Ws {
                tcp,
                channels: HashMap::new(),
                closed_channels: Vec::new(),
                close_frame: None,
                first_message: None,
            },
        )
    }

    async fn send(&mut self, channel: u8, data: &[u8]) {
        let mut payload = vec![channel];
        payload.extend_from_slice(data);
        self.tcp.write_all(&masked(2, &payload)).await.unwrap();
    }

    /// Reads one frame and records it; false at EOF.
    async fn pump(&mut self) -> bool {
        let mut h = [0u8; 2];
        if self.tcp.read_exact(&mut h).await.is_err() {
            return false;
        }
        assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
        let len = match h[1] & 0x7f {
            126 => self.tcp.read_u16().await.unwrap() as usize,
            127 => self.tcp.read_u64().await.unwrap() as usize,
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.tcp.read_exact(&mut payload).await.unwrap();
        match h[0] & 0x0f {
            2 => {
                if self.first_message.is_none() {
                    self.first_message = Some(payload.clone());
                }
                let (ch, data) = payload.split_first().unwrap();
                if *ch == 255 {
                    self.closed_channels.push(data[0]);
                } else {
                    self.channels
                        .entry(*ch)
                        .or_default()
                        .extend_from_slice(data);
                }
            }
            8 => self.close_frame = Some(payload),
            _ => {}
        }
        true
    }

    async fn until(&mut self, done: impl Fn(&Ws) -> bool) {
        let wait = async {
            while !done(self) {
                if !self.pump().await {
                    break;
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("condition in time");
    }

    fn text(&self, ch: u8) -> String {
        String::from_utf8_lossy(
            self.channels
                .get(&ch)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        )
        .into_owned()
    }
}

async fn request_get(url: &str, path: &str, extra: &str) -> (String, TcpStream) {
    let (addr, _) = common::split_url(url);
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        got.push(byte[0]);
    }
    (String::from_utf8_lossy(&got).into_owned(), tcp)
}

fn exec_url(server: &crimux_streaming::Server, cmd: &[&str], stdin: bool) -> String {
    let streams = Streams {
        stdin,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let cmd = cmd.iter().map(|s| s.to_string()).collect();
    server.exec_url(&"c1".into(), cmd, streams).unwrap()
}

#[tokio::test]
async fn v5_echo_with_stdin_close_signal() {
    let (server, _) = server().await;
    let url = exec_url(&server, &["echo"], true);
    let (head, mut ws) = Ws::connect(&url, "v5.channel.k8s.io, v4.channel.k8s.io").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Protocol: v5.channel.k8s.io"),
        "{head}"
    );
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    ws.until(|w| w.first_message.is_some()).await;
    assert_eq!(
        ws.first_message.as_deref(),
        Some(&[1u8][..]),
        "empty stdout message first"
    );
    ws.send(0, b"hello ").await;
    ws.send(0, b"websocket").await;
    ws.send(255, &[0]).await;
    ws.until(|w| w.close_frame.is_some()).await;
    assert_eq!(ws.text(1), "hello websocket");
    assert_eq!(ws.closed_channels, vec![1]);
    assert_eq!(ws.text(3), r#"{"metadata":{},"status":"Success"}"#);
    assert_eq!(ws.close_frame.as_deref(), Some(&1000u16.to_be_bytes()[..]));
    ws.tcp
        .write_all(&masked(8, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert!(closed(&mut ws.tcp).await);
}

#[tokio::test]
async fn v4_exit_code_and_resize_channel() {
    let (server, _) = server().await;
    let url = exec_url(&server, &["exit", "42"], false);
    let (head, mut ws) = Ws::connect(&url, "base64.channel.k8s.io, v4.channel.k8s.io").await;
    assert!(
        head.contains("Sec-WebSocket-Protocol: v4.channel.k8s.io"),
        "{head}"
    );
    ws.until(|w| w.close_frame.is_some()).await;
    assert!(ws.closed_channels.is_empty(), "no close signals before v5");
    let status: serde_json::Value = serde_json::from_str(&ws.text(3)).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "42");

    let streams = Streams {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let url = server
        .exec_url(&"c1".into(), vec!["resize".into()], streams)
        .unwrap();
    let (_, mut ws) = Ws::connect(&url, "v5.channel.k8s.io").await;
    ws.send(4, br#"{"Width":100,"Height":30}"#).await;
    ws.until(|w| w.text(1) == "100x30\n").await;
    ws.send(4, br#"{"Width":0,"Height":0}"#).await;
    ws.until(|w| w.close_frame.is_some()).await;
    assert_eq!(ws.text(3), r#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn websocket_refusals() {
    let (server, counters) = server().await;
    let url = exec_url(&server, &["echo"], true);
    let (head, _) = Ws::connect(&url, "base64.channel.k8s.io").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");

    // A malformed (unmasked) frame closes the session and drops the backend call.
    let url = exec_url(&server, &["hang"], true);
    let (head, mut ws) = Ws::connect(&url, "v5.channel.k8s.io").await;
    assert!(head.starts_with("HTTP/1.1 101"));
    ws.tcp.write_all(&[0x82, 0x02, 0x00, b'x']).await.unwrap();
    ws.until(|w| w.close_frame.is_some()).await;
    assert_eq!(ws.close_frame.as_deref(), Some(&1002u16.to_be_bytes()[..]));
    assert!(closed(&mut ws.tcp).await);
    tokio::time::timeout(WAIT, async {
        while counters.dropped.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();

    // Without a key it is no WebSocket handshake.
    let url = exec_url(&server, &["echo"], true);
    let (head, _) = request(&url, "Connection: Upgrade\r\nUpgrade: websocket\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let _ = base64::engine::general_purpose::STANDARD.encode(b"");
}
