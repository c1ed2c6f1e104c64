//! WebSocket framing (RFC 6455), server side: the handshake answer, reading masked client
//! frames (reassembling fragments, bounded) and writing unmasked frames.

use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// One complete message (or control frame) from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Binary(Bytes),
    Text(Bytes),
    Ping(Bytes),
    Pong,
    Close,
}

/// Appends one unmasked, unfragmented frame.
pub fn encode(opcode: u8, payload: &[u8], out: &mut BytesMut) {
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= 0xffff => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
}

/// Reads client messages from a byte stream.
pub struct Reader<R> {
    io: R,
    buf: BytesMut,
    max_message: usize,
    /// A fragmented data message being reassembled: (opcode, bytes so far).
    partial: Option<(u8, BytesMut)>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(io: R, prefix: BytesMut, max_message: usize) -> Self {
        Reader {
            io,
            buf: prefix,
            max_message,
            partial: None,
        }
    }

    /// The next message; `Ok(None)` when the client closed the connection. Errors are
    /// protocol violations (the connection is closed with an error).
    pub async fn next(&mut self) -> Result<Option<Message>, String> {
        loop {
            let Some((fin, opcode, payload)) = self.frame().await? else {
                return Ok(None);
            };
            match opcode {
                OP_PING => return Ok(Some(Message::Ping(payload))),
                OP_PONG => return Ok(Some(Message::Pong)),
                OP_CLOSE => return Ok(Some(Message::Close)),
                OP_TEXT | OP_BINARY => {
                    if self.partial.is_some() {
                        return Err("new message inside a fragmented one".into());
                    }
                    if fin {
                        return Ok(Some(data_message(opcode, payload)));
                    }
                    self.partial = Some((opcode, BytesMut::from(&payload[..])));
                }
                OP_CONTINUATION => {
                    let Some((op, mut acc)) = self.partial.take() else {
                        return Err("continuation frame without a message".into());
                    };
                    if acc.len() + payload.len() > self.max_message {
                        return Err(format!("message longer than {} bytes", self.max_message));
                    }
                    acc.extend_from_slice(&payload);
                    if fin {
                        return Ok(Some(data_message(op, acc.freeze())));
                    }
                    self.partial = Some((op, acc));
                }
                other => return Err(format!("unknown opcode {other:#x}")),
            }
        }
    }

    /// Reads one frame: (fin, opcode, unmasked payload).
    async fn frame(&mut self) -> Result<Option<(bool, u8, Bytes)>, String> {
        if !self.fill(2).await? {
            return Ok(None);
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        if b0 & 0x70 != 0 {
            return Err("reserved bits set".into());
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        if b1 & 0x80 == 0 {
            return Err("client frame not masked".into());
        }
        let (len, header) = match b1 & 0x7f {
            126 => {
                self.require(4).await?;
                (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
            }
            127 => {
                self.require(10).await?;
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            n => (u64::from(n), 2),
        };
        let control = opcode & 0x8 != 0;
        if control && (!fin || len > 125) {
            return Err("bad control frame".into());
        }
        if len > self.max_message as u64 {
            return Err(format!("frame longer than {} bytes", self.max_message));
        }
        let len = len as usize;
        self.require(header + 4 + len).await?;
        self.buf.advance(header);
        let mask = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        self.buf.advance(4);
        let mut payload = self.buf.split_to(len);
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        Ok(Some((fin, opcode, payload.freeze())))
    }

    /// Buffers `n` bytes; `false` on a clean end before any byte of a frame.
    async fn fill(&mut self, n: usize) -> Result<bool, String> {
        while self.buf.len() < n {
            let before = self.buf.len();
            let read = self
                .io
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("read failed: {e}"))?;
            if read == 0 {
                if before == 0 {
                    return Ok(false);
                }
                return Err("connection closed inside a frame".into());
            }
        }
        Ok(true)
    }

    async fn require(&mut self, n: usize) -> Result<(), String> {
        if self.fill(n).await? {
            Ok(())
        } else {
            Err("connection closed inside a frame".into())
        }
    }
}

fn data_message(opcode: u8, payload: Bytes) -> Message {
    if opcode == OP_TEXT {
        Message::Text(payload)
    } else {
        Message::Binary(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A masked client frame.
    pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(opcode, payload, &mut out);
        let mut v = out.to_vec();
        if !fin {
            v[0] &= 0x7f;
        }
        let header = v.len() - payload.len();
        v[1] |= 0x80;
        let mask = [1u8, 2, 3, 4];
        let mut framed = v[..header].to_vec();
        framed.extend_from_slice(&mask);
        framed.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        framed
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn encodes_lengths() {
        for (n, header) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
        ] {
            let mut out = BytesMut::new();
            encode(OP_BINARY, &vec![7u8; n], &mut out);
            assert_eq!(out.len(), header + n, "{n}");
            assert_eq!(out[0], 0x82);
        }
    }

    #[tokio::test]
    async fn reads_masked_fragmented_and_control_frames() {
        let (mut c, s) = tokio::io::duplex(1 << 20);
        let mut r = Reader::new(s, BytesMut::new(), 1 << 16);
        let mut bytes = client_frame(false, OP_BINARY, b"\x00hel");
        bytes.extend(client_frame(true, OP_PING, b"p"));
        bytes.extend(client_frame(true, OP_CONTINUATION, b"lo"));
        bytes.extend(client_frame(true, OP_BINARY, &vec![9u8; 300]));
        bytes.extend(client_frame(true, OP_CLOSE, b""));
        c.write_all(&bytes).await.unwrap();
        drop(c);
        assert_eq!(
            r.next().await.unwrap(),
            Some(Message::Ping(Bytes::from_static(b"p")))
        );
        assert_eq!(
            r.next().await.unwrap(),
            Some(Message::Binary(Bytes::from_static(b"\x00hello")))
        );
        assert_eq!(
            r.next().await.unwrap(),
            Some(Message::Binary(Bytes::from(vec![9u8; 300])))
        );
        assert_eq!(r.next().await.unwrap(), Some(Message::Close));
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn rejects_protocol_violations() {
        let mut unmasked = BytesMut::new();
        encode(OP_BINARY, b"x", &mut unmasked);
        let mut reserved = client_frame(true, OP_BINARY, b"x");
        reserved[0] |= 0x40;
        for bad in [
            unmasked.to_vec(),
            reserved,
            client_frame(false, OP_PING, b"x"),
            client_frame(true, OP_CONTINUATION, b"x"),
            client_frame(true, 0x3, b"x"),
            client_frame(true, OP_BINARY, &[0u8; 200]),
            client_frame(true, OP_BINARY, b"xyz")[..4].to_vec(),
        ] {
            let (mut c, s) = tokio::io::duplex(1 << 16);
            let mut r = Reader::new(s, BytesMut::new(), 100);
            c.write_all(&bad).await.unwrap();
            drop(c);
            assert!(r.next().await.is_err(), "{bad:?}");
        }
    }
}
