//! SPDY/3 frames (draft 3.1 §2.2, §2.6) and a stateful codec for them.
//!
//! Every frame has an 8-byte header: control frames carry `1|version|type`
//! then `flags|length24`; data frames carry `0|stream-id31` then
//! `flags|length24`. [`FrameCodec`] owns the two header-compression contexts,
//! so one codec must encode (and decode) every frame of its direction in wire
//! order.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::headers::{HeaderDecoder, HeaderEncoder, Headers, DEFAULT_MAX_HEADER_BLOCK};

/// A 31-bit stream identifier (client streams odd, server streams even).
pub type StreamId = u32;

/// The only SPDY version spoken here (SPDY/3.1 still says 3 on the wire).
pub const VERSION: u16 = 3;
/// Largest stream id (and largest window): 2^31 - 1.
pub const MAX_STREAM_ID: StreamId = 0x7fff_ffff;
/// Largest value of the 24-bit length field.
pub const MAX_FRAME_LEN: usize = 0x00ff_ffff;
/// Flow-control windows start here for both streams and the session.
pub const DEFAULT_INITIAL_WINDOW: u32 = 64 * 1024;

/// FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// FLAG_SETTINGS_CLEAR_SETTINGS on SETTINGS.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// Setting ids (§2.6.4) this crate acts on or that tests name.
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u32 = 4;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// Per-entry setting flags.
pub const SETTINGS_FLAG_PERSIST_VALUE: u8 = 0x01;
pub const SETTINGS_FLAG_PERSISTED: u8 = 0x02;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes (§2.6.3). 0 is invalid on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RstStatus {
    ProtocolError,
    InvalidStream,
    RefusedStream,
    UnsupportedVersion,
    Cancel,
    InternalError,
    FlowControlError,
    StreamInUse,
    StreamAlreadyClosed,
    InvalidCredentials,
    FrameTooLarge,
    /// A code this implementation does not know; kept for logging.
    Unknown(u32),
}

impl RstStatus {
    pub fn from_u32(code: u32) -> Self {
        match code {
            1 => Self::ProtocolError,
            2 => Self::InvalidStream,
            3 => Self::RefusedStream,
            4 => Self::UnsupportedVersion,
            5 => Self::Cancel,
            6 => Self::InternalError,
            7 => Self::FlowControlError,
            8 => Self::StreamInUse,
            9 => Self::StreamAlreadyClosed,
            10 => Self::InvalidCredentials,
            11 => Self::FrameTooLarge,
            other => Self::Unknown(other),
        }
    }

    pub fn as_u32(self) -> u32 {
        match self {
            Self::ProtocolError => 1,
            Self::InvalidStream => 2,
            Self::RefusedStream => 3,
            Self::UnsupportedVersion => 4,
            Self::Cancel => 5,
            Self::InternalError => 6,
            Self::FlowControlError => 7,
            Self::StreamInUse => 8,
            Self::StreamAlreadyClosed => 9,
            Self::InvalidCredentials => 10,
            Self::FrameTooLarge => 11,
            Self::Unknown(code) => code,
        }
    }
}

impl fmt::Display for RstStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}({})", self.as_u32())
    }
}

/// GOAWAY status codes (§2.6.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoAwayStatus {
    Ok,
    ProtocolError,
    InternalError,
    Unknown(u32),
}

impl GoAwayStatus {
    pub fn from_u32(code: u32) -> Self {
        match code {
            0 => Self::Ok,
            1 => Self::ProtocolError,
            2 => Self::InternalError,
            other => Self::Unknown(other),
        }
    }

    pub fn as_u32(self) -> u32 {
        match self {
            Self::Ok => 0,
            Self::ProtocolError => 1,
            Self::InternalError => 2,
            Self::Unknown(code) => code,
        }
    }
}

/// One SETTINGS entry: 8-bit flags, 24-bit id, 32-bit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A decoded SPDY/3 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: StreamId,
        associated_to: StreamId,
        /// 0 (highest) to 7.
        priority: u8,
        slot: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: StreamId,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: StreamId,
        status: RstStatus,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: StreamId,
        status: GoAwayStatus,
    },
    Headers {
        stream_id: StreamId,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        /// 0 means the session window.
        stream_id: StreamId,
        delta: u32,
    },
    Data {
        stream_id: StreamId,
        fin: bool,
        data: Bytes,
    },
    /// A control frame of a type this implementation does not know; the spec
    /// says to ignore it, so its payload was skipped.
    Unknown {
        frame_type: u16,
        flags: u8,
        len: usize,
    },
}

/// Size limits applied while decoding.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest accepted length field; a longer frame is a session error.
    pub max_frame_len: usize,
    /// Largest decompressed header block.
    pub max_header_block: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_len: MAX_FRAME_LEN,
            max_header_block: DEFAULT_MAX_HEADER_BLOCK,
        }
    }
}

/// Both directions of a connection: an encoder and a decoder, each with its
/// own zlib context. Handy for peers that read and write from one place.
pub struct FrameCodec {
    pub encoder: FrameEncoder,
    pub decoder: FrameDecoder,
}

impl FrameCodec {
    pub fn new(limits: Limits) -> Result<Self> {
        Ok(Self {
            encoder: FrameEncoder::new()?,
            decoder: FrameDecoder::new(limits),
        })
    }

    /// See [`FrameEncoder::encode`].
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<()> {
        self.encoder.encode(frame, dst)
    }

    /// See [`FrameDecoder::decode`].
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>> {
        self.decoder.decode(src)
    }
}

/// The sending half: owns the outgoing header-compression context.
pub struct FrameEncoder {
    encoder: HeaderEncoder,
}

/// The receiving half: owns the incoming header-decompression context.
pub struct FrameDecoder {
    limits: Limits,
    decoder: HeaderDecoder,
}

impl FrameEncoder {
    pub fn new() -> Result<Self> {
        Ok(Self {
            encoder: HeaderEncoder::new()?,
        })
    }

    /// Appends the wire form of `frame` to `dst`. Fails without writing
    /// anything (and without touching compression state) on invalid input.
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<()> {
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                fin,
                unidirectional,
                headers,
            } => {
                let id = nonzero_id(*stream_id)?;
                let assoc = id31(*associated_to)?;
                if *priority > 7 {
                    return Err(Error::InvalidFrame(format!("priority {priority} > 7")));
                }
                let block = self.compress(headers)?;
                let flags = flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL);
                put_control(dst, TYPE_SYN_STREAM, flags, 10 + block.len())?;
                dst.put_u32(id);
                dst.put_u32(assoc);
                dst.put_u8(priority << 5);
                dst.put_u8(*slot);
                dst.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => self.encode_headers_frame(dst, TYPE_SYN_REPLY, *stream_id, *fin, headers)?,
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => self.encode_headers_frame(dst, TYPE_HEADERS, *stream_id, *fin, headers)?,
            Frame::RstStream { stream_id, status } => {
                let id = nonzero_id(*stream_id)?;
                if status.as_u32() == 0 {
                    return Err(Error::InvalidFrame("RST_STREAM status 0".into()));
                }
                put_control(dst, TYPE_RST_STREAM, 0, 8)?;
                dst.put_u32(id);
                dst.put_u32(status.as_u32());
            }
            Frame::Settings { clear, entries } => {
                let len = entries
                    .len()
                    .checked_mul(8)
                    .and_then(|n| n.checked_add(4))
                    .filter(|n| *n <= MAX_FRAME_LEN)
                    .ok_or_else(|| Error::InvalidFrame("too many settings".into()))?;
                if let Some(bad) = entries.iter().find(|e| e.id > 0x00ff_ffff) {
                    return Err(Error::InvalidFrame(format!(
                        "setting id {} > 24 bits",
                        bad.id
                    )));
                }
                put_control(dst, TYPE_SETTINGS, flag(*clear, FLAG_CLEAR_SETTINGS), len)?;
                dst.put_u32(entries.len() as u32);
                for e in entries {
                    dst.put_u32((u32::from(e.flags) << 24) | e.id);
                    dst.put_u32(e.value);
                }
            }
            Frame::Ping { id } => {
                put_control(dst, TYPE_PING, 0, 4)?;
                dst.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let id = id31(*last_good_stream_id)?;
                put_control(dst, TYPE_GOAWAY, 0, 8)?;
                dst.put_u32(id);
                dst.put_u32(status.as_u32());
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let id = id31(*stream_id)?;
                if *delta == 0 || *delta > MAX_STREAM_ID {
                    return Err(Error::InvalidFrame(format!(
                        "window delta {delta} out of range"
                    )));
                }
                put_control(dst, TYPE_WINDOW_UPDATE, 0, 8)?;
                dst.put_u32(id);
                dst.put_u32(*delta);
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let id = nonzero_id(*stream_id)?;
                if data.len() > MAX_FRAME_LEN {
                    return Err(Error::InvalidFrame(format!("DATA of {} bytes", data.len())));
                }
                dst.reserve(8 + data.len());
                dst.put_u32(id);
                dst.put_u32((u32::from(flag(*fin, FLAG_FIN)) << 24) | data.len() as u32);
                dst.put_slice(data);
            }
            Frame::Unknown { .. } => {
                return Err(Error::InvalidFrame("cannot encode an unknown frame".into()));
            }
        }
        Ok(())
    }

    fn encode_headers_frame(
        &mut self,
        dst: &mut BytesMut,
        frame_type: u16,
        stream_id: StreamId,
        fin: bool,
        headers: &Headers,
    ) -> Result<()> {
        let id = nonzero_id(stream_id)?;
        let block = self.compress(headers)?;
        put_control(dst, frame_type, flag(fin, FLAG_FIN), 4 + block.len())?;
        dst.put_u32(id);
        dst.put_slice(&block);
        Ok(())
    }

    fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>> {
        let raw = headers.to_block()?;
        // Checked before compressing so a refusal leaves the zlib state untouched.
        if raw.len() > MAX_FRAME_LEN - 16 {
            return Err(Error::InvalidFrame(format!(
                "header block of {} bytes",
                raw.len()
            )));
        }
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        self.encoder.compress(&raw, &mut out)?;
        if out.len() > MAX_FRAME_LEN - 10 {
            return Err(Error::Compression(
                "compressed header block exceeds 24 bits".into(),
            ));
        }
        Ok(out)
    }
}

impl FrameDecoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            decoder: HeaderDecoder::new(limits.max_header_block),
        }
    }

    /// Decodes one frame from the front of `src`, consuming its bytes.
    /// `Ok(None)` means more input is needed. A [`Error::Stream`] result has
    /// consumed its frame (and kept compression in sync); any other error
    /// leaves the session unusable.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>> {
        if src.len() < 8 {
            return Ok(None);
        }
        let word = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let flags = src[4];
        let len = usize::from(src[5]) << 16 | usize::from(src[6]) << 8 | usize::from(src[7]);
        if len > self.limits.max_frame_len {
            return Err(Error::FrameTooLarge {
                len,
                max: self.limits.max_frame_len,
            });
        }
        let control = word & 0x8000_0000 != 0;
        if control {
            let version = ((word >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(Error::UnsupportedVersion(version));
            }
        }
        if src.len() < 8 + len {
            src.reserve(8 + len - src.len());
            return Ok(None);
        }
        src.advance(8);
        let mut body = src.split_to(len).freeze();
        if !control {
            let stream_id = word & MAX_STREAM_ID;
            if stream_id == 0 {
                return Err(Error::Protocol("DATA frame on stream 0".into()));
            }
            return Ok(Some(Frame::Data {
                stream_id,
                fin: flags & FLAG_FIN != 0,
                data: body,
            }));
        }
        let frame_type = (word & 0xffff) as u16;
        let fin = flags & FLAG_FIN != 0;
        let frame = match frame_type {
            TYPE_SYN_STREAM => {
                need_at_least(frame_type, len, 10)?;
                let stream_id = body.get_u32() & MAX_STREAM_ID;
                let associated_to = body.get_u32() & MAX_STREAM_ID;
                let priority = body.get_u8() >> 5;
                let slot = body.get_u8();
                let headers = self.decompress(stream_id, &body)?;
                if stream_id == 0 {
                    return Err(Error::Protocol("SYN_STREAM for stream 0".into()));
                }
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                need_at_least(frame_type, len, 4)?;
                let stream_id = body.get_u32() & MAX_STREAM_ID;
                let headers = self.decompress(stream_id, &body)?;
                if stream_id == 0 {
                    return Err(Error::Protocol("header frame for stream 0".into()));
                }
                if frame_type == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM => {
                need_exactly(frame_type, len, 8)?;
                let stream_id = body.get_u32() & MAX_STREAM_ID;
                let code = body.get_u32();
                if stream_id == 0 || code == 0 {
                    return Err(Error::Protocol(format!(
                        "RST_STREAM with stream {stream_id} status {code}"
                    )));
                }
                Frame::RstStream {
                    stream_id,
                    status: RstStatus::from_u32(code),
                }
            }
            TYPE_SETTINGS => {
                need_at_least(frame_type, len, 4)?;
                let count = body.get_u32() as usize;
                if Some(len) != count.checked_mul(8).and_then(|n| n.checked_add(4)) {
                    return Err(Error::Protocol(format!(
                        "SETTINGS length {len} does not hold {count} entries"
                    )));
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = body.get_u32();
                        Setting {
                            flags: (word >> 24) as u8,
                            id: word & 0x00ff_ffff,
                            value: body.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            TYPE_PING => {
                need_exactly(frame_type, len, 4)?;
                Frame::Ping { id: body.get_u32() }
            }
            TYPE_GOAWAY => {
                need_exactly(frame_type, len, 8)?;
                Frame::GoAway {
                    last_good_stream_id: body.get_u32() & MAX_STREAM_ID,
                    status: GoAwayStatus::from_u32(body.get_u32()),
                }
            }
            TYPE_WINDOW_UPDATE => {
                need_exactly(frame_type, len, 8)?;
                let stream_id = body.get_u32() & MAX_STREAM_ID;
                let delta = body.get_u32() & MAX_STREAM_ID;
                if delta == 0 {
                    return Err(if stream_id == 0 {
                        Error::Protocol("session WINDOW_UPDATE with delta 0".into())
                    } else {
                        Error::stream(stream_id, RstStatus::ProtocolError, "WINDOW_UPDATE delta 0")
                    });
                }
                Frame::WindowUpdate { stream_id, delta }
            }
            _ => Frame::Unknown {
                frame_type,
                flags,
                len,
            },
        };
        Ok(Some(frame))
    }

    /// Decompresses a header block; content errors become stream errors,
    /// zlib errors stay session errors.
    fn decompress(&mut self, stream_id: StreamId, compressed: &[u8]) -> Result<Headers> {
        if compressed.is_empty() {
            return Ok(Headers::new());
        }
        let raw = self.decoder.decompress(compressed)?;
        Headers::from_block(&raw)
            .map_err(|reason| Error::stream(stream_id, RstStatus::ProtocolError, reason))
    }
}

fn flag(set: bool, bit: u8) -> u8 {
    if set {
        bit
    } else {
        0
    }
}

fn id31(id: StreamId) -> Result<u32> {
    if id > MAX_STREAM_ID {
        return Err(Error::InvalidFrame(format!(
            "stream id {id} exceeds 31 bits"
        )));
    }
    Ok(id)
}

fn nonzero_id(id: StreamId) -> Result<u32> {
    if id == 0 {
        return Err(Error::InvalidFrame("stream id 0".into()));
    }
    id31(id)
}

fn put_control(dst: &mut BytesMut, frame_type: u16, flags: u8, len: usize) -> Result<()> {
    if len > MAX_FRAME_LEN {
        return Err(Error::InvalidFrame(format!("control frame of {len} bytes")));
    }
    dst.reserve(8 + len);
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(frame_type);
    dst.put_u32((u32::from(flags) << 24) | len as u32);
    Ok(())
}

fn need_at_least(frame_type: u16, len: usize, min: usize) -> Result<()> {
    if len < min {
        return Err(Error::Protocol(format!(
            "control frame type {frame_type} of {len} bytes (minimum {min})"
        )));
    }
    Ok(())
}

fn need_exactly(frame_type: u16, len: usize, want: usize) -> Result<()> {
    if len != want {
        return Err(Error::Protocol(format!(
            "control frame type {frame_type} of {len} bytes (expected {want})"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
