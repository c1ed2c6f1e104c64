//! Exec and attach over WebSocket (RFC 6455) with the Kubernetes channel sub-protocols,
//! as newer crictl offers them (`--transport websocket`): every binary message starts with
//! a channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize). `v5.channel.k8s.io`
//! adds a close signal: the message `[255, channel]` ends that channel (stdin EOF).
//!
//! Hand-written because it is small: the handshake, masked client frames, unmasked server
//! frames with fragments, ping/pong and close.

use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use crimux_core::Error;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::http::{dial, read_response, refused, Target};
use super::remotecommand::ExecOptions;
use super::session::{channel_incoming, Session, Sink, Transport};
use super::Protocol;

/// The GUID of RFC 6455 §1.3, hashed with the key into `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest message accepted from the server.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

const OP_CONTINUATION: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

/// The channel bytes.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` half-closes a channel.
const CLOSE: u8 = 255;

/// Frames the writer task sends (opcode, payload).
type Out = (u8, Vec<u8>);

/// The WebSocket connection; dropping it aborts both tasks.
pub struct Connection {
    out: mpsc::Sender<Out>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Connection {
    /// Sends a close frame (normal closure); the server answers and closes.
    pub async fn close(&self) {
        let _ = self
            .out
            .send((OP_CLOSE, 1000u16.to_be_bytes().to_vec()))
            .await;
    }
}

/// Writes one channel.
pub struct Writer {
    channel: u8,
    v5: bool,
    out: mpsc::Sender<Out>,
    closed: bool,
}

impl Writer {
    pub async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.closed {
            return Err(Error::FailedPrecondition(format!(
                "channel {} is closed",
                self.channel
            )));
        }
        let mut msg = Vec::with_capacity(data.len() + 1);
        msg.push(self.channel);
        msg.extend_from_slice(data);
        self.out.send((OP_BINARY, msg)).await.map_err(|_| gone())
    }

    /// v5: signals the end of this channel. v4 has no way to say it: a no-op.
    pub async fn close(&mut self) -> Result<(), Error> {
        if self.closed || !self.v5 {
            return Ok(());
        }
        self.closed = true;
        self.out
            .send((OP_BINARY, vec![CLOSE, self.channel]))
            .await
            .map_err(|_| gone())
    }
}

fn gone() -> Error {
    Error::Unavailable("WebSocket connection closed".into())
}

/// Starts an exec (or attach) session over WebSocket at `url`, offering `opts.protocols`
/// (default v5 then v4).
pub async fn exec(url: &str, opts: ExecOptions) -> Result<Session, Error> {
    let target = Target::parse(url)?;
    let offered: Vec<Protocol> = match opts.protocols.is_empty() {
        true => vec![Protocol::V5, Protocol::V4],
        false => opts.protocols.clone(),
    };
    let names: Vec<&str> = offered.iter().map(|p| p.name()).collect();
    let mut io = dial(&target).await?;
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: crimux-streaming-client\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
        target.path,
        target.authority,
        names.join(", ")
    );
    io.write_all(req.as_bytes())
        .await
        .map_err(|e| Error::Unavailable(format!("send WebSocket upgrade: {e}")))?;
    let (head, leftover) = read_response(&mut io).await?;
    if head.status != 101 {
        return Err(refused(&head, b""));
    }
    if head.header("sec-websocket-accept") != Some(accept_key(&key).as_str()) {
        return Err(Error::Internal("wrong Sec-WebSocket-Accept".into()));
    }
    let picked = head.header("sec-websocket-protocol").unwrap_or_default();
    let protocol = Protocol::from_name(picked)
        .filter(|p| offered.contains(p))
        .ok_or_else(|| Error::Internal(format!("server picked protocol {picked:?}")))?;
    let v5 = protocol == Protocol::V5;
    let (read, write) = io.into_split();
    let (out, out_rx) = mpsc::channel::<Out>(64);
    let (stdout_tx, stdout) = channel_incoming();
    let (stderr_tx, stderr) = channel_incoming();
    let (error_tx, error) = channel_incoming();
    let routes = Routes {
        stdout: opts.stdout.then_some(stdout_tx),
        stderr: (opts.stderr && !opts.tty).then_some(stderr_tx),
        error: Some(error_tx),
    };
    let reader = tokio::spawn(read_loop(read, leftover, routes, out.clone()));
    let writer = tokio::spawn(write_loop(write, out_rx));
    let sink = |channel| {
        Sink::Ws(Writer {
            channel,
            v5,
            out: out.clone(),
            closed: false,
        })
    };
    Ok(Session::new(
        protocol,
        opts.stdin.then(|| sink(STDIN)),
        opts.stdout.then_some(stdout),
        (opts.stderr && !opts.tty).then_some(stderr),
        opts.tty.then(|| sink(RESIZE)),
        error,
        Transport::Ws(Connection {
            out: out.clone(),
            reader,
            writer,
        }),
    ))
}

/// `Sec-WebSocket-Accept` for `key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

type Route = Option<mpsc::Sender<Result<Bytes, Error>>>;

struct Routes {
    stdout: Route,
    stderr: Route,
    error: Route,
}

async fn write_loop(mut io: OwnedWriteHalf, mut rx: mpsc::Receiver<Out>) {
    let mut buf = BytesMut::new();
    while let Some((opcode, payload)) = rx.recv().await {
        buf.clear();
        encode_frame(opcode, &payload, rand::random(), &mut buf);
        if io.write_all(&buf).await.is_err() || opcode == OP_CLOSE {
            return;
        }
    }
}

/// One final, masked client frame.
pub fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4], dst: &mut BytesMut) {
    dst.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => dst.put_u8(0x80 | n as u8),
        n if n <= 0xffff => {
            dst.put_u8(0x80 | 126);
            dst.put_u16(n as u16);
        }
        n => {
            dst.put_u8(0x80 | 127);
            dst.put_u64(n as u64);
        }
    }
    dst.put_slice(&mask);
    dst.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// A decoded frame: (fin, opcode, payload).
type Decoded = (bool, u8, Vec<u8>);

/// Decodes one frame from the front of `src`; `Ok(None)` when more bytes are needed.
pub fn decode_frame(src: &mut BytesMut) -> Result<Option<Decoded>, String> {
    if src.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (src[0], src[1]);
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 if src.len() >= 4 => (u64::from(u16::from_be_bytes([src[2], src[3]])), 4),
        127 if src.len() >= 10 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&src[2..10]);
            (u64::from_be_bytes(raw), 10)
        }
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|n| *n <= MAX_MESSAGE)
        .ok_or_else(|| format!("frame of {len} bytes"))?;
    let mask = if masked {
        if src.len() < at + 4 {
            return Ok(None);
        }
        let m = [src[at], src[at + 1], src[at + 2], src[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    if src.len() < at + len {
        return Ok(None);
    }
    src.advance(at);
    let mut payload = src.split_to(len).to_vec();
    if let Some(m) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= m[i % 4]);
    }
    Ok(Some((b0 & 0x80 != 0, b0 & 0x0f, payload)))
}

async fn read_loop(
    mut io: OwnedReadHalf,
    mut buf: BytesMut,
    mut routes: Routes,
    out: mpsc::Sender<Out>,
) {
    let mut message: Vec<u8> = Vec::new();
    let reason = loop {
        let (fin, opcode, payload) = match decode_frame(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => match io.read_buf(&mut buf).await {
                Ok(0) => break None,
                Ok(_) => continue,
                Err(e) => break Some(format!("read: {e}")),
            },
            Err(e) => break Some(e),
        };
        match opcode {
            OP_PING => {
                let _ = out.send((OP_PONG, payload)).await;
                continue;
            }
            OP_PONG => continue,
            OP_CLOSE => {
                let _ = out
                    .send((OP_CLOSE, payload.get(..2).unwrap_or_default().to_vec()))
                    .await;
                break None;
            }
            OP_BINARY | OP_TEXT | OP_CONTINUATION => {}
            other => break Some(format!("unknown opcode {other}")),
        }
        if message.len() + payload.len() > MAX_MESSAGE {
            break Some("message too large".into());
        }
        message.extend_from_slice(&payload);
        if !fin {
            continue;
        }
        let whole = std::mem::take(&mut message);
        let Some((&channel, data)) = whole.split_first() else {
            continue;
        };
        let route = match channel {
            STDOUT => &mut routes.stdout,
            STDERR => &mut routes.stderr,
            ERROR => &mut routes.error,
            CLOSE => {
                // v5: the server ends a channel.
                match data.first() {
                    Some(&STDOUT) => routes.stdout = None,
                    Some(&STDERR) => routes.stderr = None,
                    Some(&ERROR) => routes.error = None,
                    _ => {}
                }
                continue;
            }
            _ => continue,
        };
        if let Some(tx) = route {
            if !data.is_empty() {
                let _ = tx.send(Ok(Bytes::copy_from_slice(data))).await;
            }
        }
    };
    if let Some(reason) = reason {
        let err = || Err(Error::Unavailable(format!("WebSocket: {reason}")));
        for tx in [routes.stdout, routes.stderr, routes.error]
            .into_iter()
            .flatten()
        {
            let _ = tx.try_send(err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_round_trip_all_length_forms() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = BytesMut::new();
            encode_frame(OP_BINARY, &payload, [1, 2, 3, 4], &mut buf);
            let total = buf.len();
            // Every prefix is "need more".
            for cut in [0, 1, total / 2, total - 1] {
                let mut part = BytesMut::from(&buf[..cut]);
                assert_eq!(decode_frame(&mut part), Ok(None), "len {len} cut {cut}");
            }
            let (fin, op, got) = decode_frame(&mut buf)
                .expect("decode")
                .expect("whole frame");
            assert!(fin);
            assert_eq!(op, OP_BINARY);
            assert_eq!(got, payload);
            assert!(buf.is_empty());
        }
        let mut unmasked = BytesMut::from(&[0x01u8, 0x03, 1, b'h', b'i'][..]);
        assert_eq!(
            decode_frame(&mut unmasked).expect("decode"),
            Some((false, OP_TEXT, vec![1, b'h', b'i']))
        );
        let mut huge = BytesMut::from(&[0x82u8, 127, 0xff, 0, 0, 0, 0, 0, 0, 0][..]);
        assert!(decode_frame(&mut huge).is_err());
    }
}
