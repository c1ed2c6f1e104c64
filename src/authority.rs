//! Lets gRPC clients that send a socket path as HTTP/2 `:authority` talk to crimux.
//!
//! Older Go gRPC clients (crictl before the `localhost` convention, kubelet before 1.26,
//! grpc-java, some Python builds) dial `unix:///run/crimux/crimux.sock` and send
//! `:authority: /run/crimux/crimux.sock`. The h2 server under tonic refuses such a request
//! with RST_STREAM(PROTOCOL_ERROR) before crimux sees it, and h2 has no switch for that.
//! containerd (Go) accepts any authority, so runtimes are expected to.
//!
//! `AuthorityFix` sits between the socket and the HTTP/2 server and rewrites, on the way in,
//! every request header block: HPACK-decoded with the client's table, the `:authority`
//! replaced by `localhost` when it is not a valid authority, and re-encoded as literals that
//! never touch the dynamic table (so the server's decoder table stays empty and always agrees
//! with ours). Every other frame, and everything the server writes, passes through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Every HTTP/2 peer accepts frames of this size (SETTINGS_MAX_FRAME_SIZE's floor).
const MAX_OUT_FRAME: usize = 16_384;
/// A header block larger than this (after CONTINUATIONs) is refused: the server's own limit
/// is far lower, so nothing legitimate is lost.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// A frame larger than this is not buffered: the server refuses it anyway.
const MAX_FRAME: usize = 16 << 20;
const REPLACEMENT: &[u8] = b"localhost";

/// A connection whose request header blocks get a valid `:authority`.
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    /// Bytes read from the socket, not yet rewritten.
    raw: BytesMut,
    /// Rewritten bytes the server has not read yet.
    out: BytesMut,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            rewriter: Rewriter::default(),
            raw: BytesMut::with_capacity(8192),
            out: BytesMut::with_capacity(8192),
            eof: false,
        }
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let filled = read.filled();
                    if filled.is_empty() {
                        this.eof = true;
                        // A partial frame at EOF goes to the server as it is, which then
                        // sees the truncation itself.
                        this.out.extend_from_slice(&this.raw.split());
                        continue;
                    }
                    this.raw.extend_from_slice(filled);
                    this.rewriter
                        .process(&mut this.raw, &mut this.out)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A header block being collected across HEADERS and CONTINUATION frames.
struct Pending {
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

/// The client-to-server frame rewriter.
#[derive(Default)]
struct Rewriter {
    preface_seen: usize,
    decoder: HpackDecoder,
    pending: Option<Pending>,
}

/// The client's HPACK state: decoding must follow every block it sends, in order.
struct HpackDecoder(loona_hpack::Decoder<'static>);

impl Default for HpackDecoder {
    fn default() -> Self {
        HpackDecoder(loona_hpack::Decoder::new())
    }
}

impl Rewriter {
    /// Moves every complete unit of `raw` to `out`, rewritten where needed.
    fn process(&mut self, raw: &mut BytesMut, out: &mut BytesMut) -> Result<(), String> {
        if self.preface_seen < PREFACE_LEN {
            let n = (PREFACE_LEN - self.preface_seen).min(raw.len());
            out.extend_from_slice(&raw.split_to(n));
            self.preface_seen += n;
        }
        while raw.len() >= FRAME_HEADER_LEN {
            let len =
                (usize::from(raw[0]) << 16) | (usize::from(raw[1]) << 8) | usize::from(raw[2]);
            if len > MAX_FRAME {
                return Err(format!("HTTP/2 frame of {len} bytes is too large"));
            }
            if raw.len() < FRAME_HEADER_LEN + len {
                return Ok(());
            }
            let frame = raw.split_to(FRAME_HEADER_LEN + len);
            let (kind, flags) = (frame[3], frame[4]);
            let stream_id =
                u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
            let payload = &frame[FRAME_HEADER_LEN..];
            match kind {
                HEADERS => self.headers(stream_id, flags, payload, out)?,
                CONTINUATION => self.continuation(stream_id, flags, payload, out)?,
                _ => out.extend_from_slice(&frame),
            }
        }
        Ok(())
    }

    fn headers(
        &mut self,
        stream_id: u32,
        flags: u8,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), String> {
        let mut body = payload;
        let mut pad = 0usize;
        if flags & PADDED != 0 {
            pad = usize::from(*body.first().ok_or("HEADERS frame without its pad length")?);
            body = &body[1..];
        }
        let mut priority = None;
        if flags & PRIORITY != 0 {
            let p: [u8; 5] = body
                .get(..5)
                .and_then(|p| p.try_into().ok())
                .ok_or("HEADERS frame too short for its priority")?;
            priority = Some(p);
            body = &body[5..];
        }
        if pad > body.len() {
            return Err("HEADERS padding longer than the frame".into());
        }
        let fragment = &body[..body.len() - pad];
        self.pending = Some(Pending {
            stream_id,
            flags,
            priority,
            block: fragment.to_vec(),
        });
        if flags & END_HEADERS != 0 {
            self.finish(out)?;
        }
        Ok(())
    }

    fn continuation(
        &mut self,
        stream_id: u32,
        flags: u8,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), String> {
        let pending = self
            .pending
            .as_mut()
            .filter(|p| p.stream_id == stream_id)
            .ok_or("CONTINUATION frame without its HEADERS")?;
        if pending.block.len() + payload.len() > MAX_HEADER_BLOCK {
            return Err("HTTP/2 header block too large".into());
        }
        pending.block.extend_from_slice(payload);
        if flags & END_HEADERS != 0 {
            self.finish(out)?;
        }
        Ok(())
    }

    /// Decodes the collected block, fixes `:authority`, and writes it out again.
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), String> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let mut fields = self
            .decoder
            .0
            .decode(&pending.block)
            .map_err(|e| format!("undecodable HTTP/2 header block: {e:?}"))?;
        for (name, value) in fields.iter_mut() {
            if name.as_slice() == b":authority" && !valid_authority(value) {
                *value = REPLACEMENT.to_vec();
            }
        }
        let block = encode_literals(&fields);
        write_block(&pending, &block, out);
        Ok(())
    }
}

fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// HPACK "literal header field without indexing, new name" for every field: no Huffman, no
/// dynamic table, so any decoder reads it the same way whatever its table holds.
fn encode_literals(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        encode_string(name, &mut block);
        encode_string(value, &mut block);
    }
    block
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    encode_integer(s.len(), 7, 0x00, out);
    out.extend_from_slice(s);
}

/// HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1).
fn encode_integer(mut value: usize, prefix: u32, first_bits: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first_bits | value as u8);
        return;
    }
    out.push(first_bits | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// Writes a HEADERS frame (and CONTINUATIONs as needed) carrying `block`.
fn write_block(pending: &Pending, block: &[u8], out: &mut BytesMut) {
    let priority_len = if pending.priority.is_some() { 5 } else { 0 };
    let first_room = MAX_OUT_FRAME - priority_len;
    let (first, mut rest) = block.split_at(block.len().min(first_room));
    let mut flags = pending.flags & (END_STREAM | PRIORITY);
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    put_frame_header(
        out,
        priority_len + first.len(),
        HEADERS,
        flags,
        pending.stream_id,
    );
    if let Some(p) = pending.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_OUT_FRAME));
        let flags = if tail.is_empty() { END_HEADERS } else { 0 };
        put_frame_header(out, chunk.len(), CONTINUATION, flags, pending.stream_id);
        out.extend_from_slice(chunk);
        rest = tail;
    }
}

fn put_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    out.put_u8((len >> 16) as u8);
    out.put_u8((len >> 8) as u8);
    out.put_u8(len as u8);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id & 0x7fff_ffff);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame_header(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out.to_vec()
    }

    fn request_fields(authority: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (
                b":path".to_vec(),
                b"/runtime.v1.RuntimeService/Version".to_vec(),
            ),
            (b":authority".to_vec(), authority.as_bytes().to_vec()),
            (b"content-type".to_vec(), b"application/grpc".to_vec()),
        ]
    }

    /// Encodes like a real client: Huffman and the dynamic table, via the hpack encoder.
    fn client_block(encoder: &mut loona_hpack::Encoder<'_>, authority: &str) -> Vec<u8> {
        let fields = request_fields(authority);
        encoder.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
    }

    /// Runs bytes through the rewriter in chunks of `chunk` bytes.
    fn rewrite(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut rewriter = Rewriter::default();
        let (mut raw, mut out) = (BytesMut::new(), BytesMut::new());
        for piece in input.chunks(chunk) {
            raw.extend_from_slice(piece);
            rewriter.process(&mut raw, &mut out).expect("rewrite");
        }
        assert!(raw.is_empty(), "{} bytes left unprocessed", raw.len());
        out.to_vec()
    }

    /// Splits server-bound bytes back into (kind, flags, stream, payload) after the preface.
    fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert_eq!(&bytes[..PREFACE_LEN], PREFACE);
        let mut rest = &bytes[PREFACE_LEN..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let len =
                (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            out.push((rest[3], rest[4], stream, rest[9..9 + len].to_vec()));
            rest = &rest[9 + len..];
        }
        out
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost_and_others_stay() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        let cases = [
            ("/run/crimux/crimux.sock", "localhost"),
            ("%2Frun%2Fcrimux.sock", "localhost"),
            ("localhost", "localhost"),
            ("example.com:443", "example.com:443"),
            ("/run/crimux/crimux.sock", "localhost"), // again: the client's table now has it
        ];
        for (i, (authority, _)) in cases.iter().enumerate() {
            let block = client_block(&mut encoder, authority);
            input.extend(frame(HEADERS, END_HEADERS, 1 + 2 * i as u32, &block));
            input.extend(frame(0x0, END_STREAM, 1 + 2 * i as u32, b"\0\0\0\0\0"));
        }
        for chunk in [1, 7, 4096] {
            let out = frames(&rewrite(&input, chunk));
            let mut decoder = loona_hpack::Decoder::new();
            let headers: Vec<_> = out.iter().filter(|f| f.0 == HEADERS).collect();
            assert_eq!(headers.len(), cases.len());
            for ((_, flags, _, block), (_, want)) in headers.iter().zip(cases) {
                assert_eq!(flags & END_HEADERS, END_HEADERS);
                let fields = decoder.decode(block).expect("server-side decode");
                let mut expected = request_fields(want);
                expected[3].1 = want.as_bytes().to_vec();
                assert_eq!(fields, expected);
            }
            // SETTINGS and DATA frames pass through as they were.
            assert_eq!(out[0], (0x4, 0, 0, vec![]));
            assert_eq!(out.iter().filter(|f| f.0 == 0x0).count(), cases.len());
        }
    }

    #[test]
    fn padding_priority_and_continuations_are_handled() {
        let mut encoder = loona_hpack::Encoder::new();
        let block = client_block(&mut encoder, "/tmp/x.sock");
        let (a, b) = block.split_at(block.len() / 2);
        let mut headers = vec![3u8]; // pad length
        headers.extend_from_slice(&[0x80, 0, 0, 1, 16]); // exclusive dependency on 1, weight
        headers.extend_from_slice(a);
        headers.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 3, &headers));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, b));
        let out = frames(&rewrite(&input, 5));
        assert_eq!(out.len(), 1);
        let (kind, flags, stream, payload) = &out[0];
        assert_eq!((*kind, *stream), (HEADERS, 3));
        assert_eq!(*flags, PRIORITY | END_STREAM | END_HEADERS);
        assert_eq!(&payload[..5], &[0x80, 0, 0, 1, 16]);
        let fields = loona_hpack::Decoder::new()
            .decode(&payload[5..])
            .expect("decode");
        assert_eq!(fields[3], (b":authority".to_vec(), b"localhost".to_vec()));
    }

    #[test]
    fn large_blocks_are_split_into_continuations() {
        let mut fields = request_fields("/x.sock");
        fields.push((b"x-big".to_vec(), vec![b'a'; 40_000]));
        let block = encode_literals(&fields);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, 0, 5, &block[..10_000]));
        input.extend(frame(CONTINUATION, 0, 5, &block[10_000..30_000]));
        input.extend(frame(CONTINUATION, END_HEADERS, 5, &block[30_000..]));
        let out = frames(&rewrite(&input, 65_536));
        assert!(out.len() >= 3);
        assert!(out.iter().all(|f| f.3.len() <= MAX_OUT_FRAME));
        assert_eq!(out[0].0, HEADERS);
        assert!(out[1..].iter().all(|f| f.0 == CONTINUATION));
        assert_eq!(out.last().map(|f| f.1 & END_HEADERS), Some(END_HEADERS));
        let joined: Vec<u8> = out.iter().flat_map(|f| f.3.clone()).collect();
        let decoded = loona_hpack::Decoder::new().decode(&joined).expect("decode");
        assert_eq!(decoded[3].1, b"localhost");
        assert_eq!(decoded[5].1.len(), 40_000);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            frame(CONTINUATION, END_HEADERS, 1, b"x"),
            frame(HEADERS, PADDED | END_HEADERS, 1, &[9, 1]),
            frame(HEADERS, PRIORITY | END_HEADERS, 1, &[1, 2]),
            frame(
                HEADERS,
                END_HEADERS,
                1,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
        ];
        for case in cases {
            let mut input = PREFACE.to_vec();
            input.extend(case);
            let mut rewriter = Rewriter::default();
            let (mut raw, mut out) = (BytesMut::from(&input[..]), BytesMut::new());
            assert!(rewriter.process(&mut raw, &mut out).is_err());
        }
    }

    #[test]
    fn hpack_integers_follow_rfc7541() {
        let mut out = Vec::new();
        encode_integer(10, 5, 0, &mut out);
        assert_eq!(out, [10]);
        out.clear();
        encode_integer(1337, 5, 0, &mut out);
        assert_eq!(out, [31, 154, 10]);
        out.clear();
        encode_integer(127, 7, 0, &mut out);
        assert_eq!(out, [127, 0]);
    }
}
