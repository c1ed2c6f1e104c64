//! Go gRPC clients of the kubelet-1.25 / crictl-1.26 era send the socket path as HTTP/2
//! `:authority`. These tests speak raw HTTP/2 over crimux's socket the way they do, and check
//! that crimux answers instead of resetting the stream.

mod common;

use std::time::Duration;

use common::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK literal without indexing, new name; every string shorter than 127 bytes.
fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0x00);
    for s in [name, value] {
        assert!(s.len() < 127);
        block.push(s.len() as u8);
        block.extend_from_slice(s.as_bytes());
    }
}

/// Calls RuntimeService/Version with `authority` and returns the response body bytes.
async fn version_with_authority(socket: &std::path::Path, authority: &str) -> Vec<u8> {
    let mut conn = UnixStream::connect(socket).await.expect("connect");
    let mut block = Vec::new();
    literal(&mut block, ":method", "POST");
    literal(&mut block, ":scheme", "http");
    literal(&mut block, ":path", "/runtime.v1.RuntimeService/Version");
    literal(&mut block, ":authority", authority);
    literal(&mut block, "content-type", "application/grpc");
    literal(&mut block, "te", "trailers");
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(HEADERS, END_HEADERS, 1, &block));
    // An empty VersionRequest: uncompressed, zero-length message.
    out.extend(frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]));
    conn.write_all(&out).await.expect("write request");

    let mut body = Vec::new();
    let read = async {
        loop {
            let mut header = [0u8; 9];
            conn.read_exact(&mut header)
                .await
                .expect("read frame header");
            let len = (usize::from(header[0]) << 16)
                | (usize::from(header[1]) << 8)
                | usize::from(header[2]);
            let (kind, flags) = (header[3], header[4]);
            let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
            let mut payload = vec![0u8; len];
            conn.read_exact(&mut payload)
                .await
                .expect("read frame payload");
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    conn.write_all(&frame(SETTINGS, ACK, 0, &[]))
                        .await
                        .expect("ack");
                }
                RST_STREAM if stream == 1 => panic!("crimux reset the stream: {payload:?}"),
                GOAWAY => panic!("crimux closed the connection: {payload:?}"),
                DATA if stream == 1 => body.extend_from_slice(&payload),
                // Trailers end the call.
                HEADERS if stream == 1 && flags & END_STREAM != 0 => return,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("no complete answer within 20 s");
    body
}

#[tokio::test]
async fn a_socket_path_authority_is_answered() {
    let env = TestEnv::start().await;
    let socket = env.crimux.socket();
    for authority in [socket.display().to_string(), "localhost".to_string()] {
        let body = version_with_authority(&socket, &authority).await;
        assert!(
            body.windows(6).any(|w| w == b"crimux"),
            "{authority}: VersionResponse without the runtime name: {body:?}"
        );
    }
}
