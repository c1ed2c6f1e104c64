//! The attach wire format: how `crimux-log` hands a live copy of the raw
//! container output to whoever connects to its attach socket (crimux, for
//! `kubectl attach`).
//!
//! Each frame is `[1 byte stream: 1 = stdout, 2 = stderr][4 bytes big-endian
//! length][data]`. Data is raw output exactly as read from the container, not
//! CRI-encoded. A client only sees output produced after it connected.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ParseError;
use crate::format::Stream;

/// Stream byte + length.
pub const FRAME_HEADER_LEN: usize = 5;

/// The stream byte used in frames.
pub fn stream_byte(stream: Stream) -> u8 {
    match stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    }
}

/// Builds one frame. Data longer than `u32::MAX` is cut into several frames.
pub fn encode_frames(stream: Stream, mut data: &[u8], out: &mut BytesMut) {
    loop {
        let n = data.len().min(u32::MAX as usize);
        out.reserve(FRAME_HEADER_LEN + n);
        out.put_u8(stream_byte(stream));
        out.put_u32(n as u32);
        out.put_slice(&data[..n]);
        data = &data[n..];
        if data.is_empty() {
            return;
        }
    }
}

/// Reassembles frames from bytes as they arrive from the socket.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if one has fully arrived.
    pub fn next_frame(&mut self) -> Result<Option<(Stream, Bytes)>, ParseError> {
        if self.buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let stream = match self.buf[0] {
            1 => Stream::Stdout,
            2 => Stream::Stderr,
            other => return Err(ParseError::FrameStream(other)),
        };
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let total = FRAME_HEADER_LEN + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        self.buf.advance(FRAME_HEADER_LEN);
        Ok(Some((stream, self.buf.split_to(len as usize).freeze())))
    }

    /// Bytes received but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_bytes_are_exact() {
        let mut out = BytesMut::new();
        encode_frames(Stream::Stderr, b"hi", &mut out);
        encode_frames(Stream::Stdout, b"", &mut out);
        assert_eq!(&out[..], b"\x02\x00\x00\x00\x02hi\x01\x00\x00\x00\x00");
    }

    #[test]
    fn decoder_handles_any_split() {
        let mut wire = BytesMut::new();
        encode_frames(Stream::Stdout, b"hello", &mut wire);
        encode_frames(Stream::Stderr, b"", &mut wire);
        encode_frames(Stream::Stderr, &[7u8; 300], &mut wire);
        for step in 1..wire.len() {
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            for piece in wire.chunks(step) {
                dec.extend(piece);
                while let Some(f) = dec.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(dec.pending(), 0);
            let want = vec![
                (Stream::Stdout, Bytes::from_static(b"hello")),
                (Stream::Stderr, Bytes::new()),
                (Stream::Stderr, Bytes::from(vec![7u8; 300])),
            ];
            assert_eq!(got, want, "step {step}");
        }
    }

    #[test]
    fn decoder_rejects_unknown_stream() {
        let mut dec = FrameDecoder::new();
        dec.extend(b"\x03\x00\x00\x00\x00");
        assert_eq!(dec.next_frame(), Err(ParseError::FrameStream(3)));
    }
}
