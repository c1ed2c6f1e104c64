//! Codec tests: round trips, independent compression vectors, malformed input.

use super::*;
use crate::headers::{HeaderDecoder, HeaderEncoder, SPDY3_DICTIONARY};

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn hdrs(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().map(|(n, v)| (*n, *v)).collect()
}

/// Produced by python3's zlib (system libz) with
/// `compressobj(level=9, wbits=15, memLevel=8, zdict=SPDY3_DICTIONARY)`,
/// `compress(block) + flush(Z_SYNC_FLUSH)` per block, one context for all four.
const PY_VECTORS: [&[u8]; 4] = [
    &[
        0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xa6, 0x23, 0x46, 0x70, 0x3a, 0x2b, 0x29, 0x4a,
        0x4d, 0xcc, 0x85, 0x16, 0x25, 0xac, 0xa9, 0xa0, 0x80, 0x06, 0x00, 0x00, 0x00, 0xff, 0xff,
    ],
    &[
        0xc2, 0x2a, 0x05, 0x4c, 0xcc, 0x29, 0xf9, 0xa5, 0x25, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
    ],
    &[
        0x02, 0xa5, 0x55, 0x48, 0xb1, 0x5d, 0x04, 0xce, 0x21, 0x16, 0x06, 0x16, 0x06, 0x40, 0x9a,
        0xb3, 0x08, 0x12, 0xcd, 0x99, 0xa0, 0xe4, 0xcf, 0x68, 0x80, 0xa1, 0x1b, 0x54, 0x46, 0x25,
        0x02, 0x00, 0x00, 0x00, 0xff, 0xff,
    ],
    &[
        0x02, 0x65, 0x48, 0x50, 0x16, 0xa8, 0xd0, 0xcd, 0x2d, 0xcd, 0x29, 0xc9, 0x04, 0x97, 0xc0,
        0x0c, 0x49, 0x0c, 0xc9, 0x60, 0x8b, 0x73, 0x0b, 0x4a, 0x40, 0x59, 0x8d, 0x01, 0x00, 0x00,
        0x00, 0xff, 0xff,
    ],
];

fn py_blocks() -> [Headers; 4] {
    [
        hdrs(&[("streamtype", "error")]),
        hdrs(&[("streamtype", "stdout")]),
        hdrs(&[("port", "8080"), ("requestid", "0"), ("streamtype", "data")]),
        hdrs(&[
            ("x-multi", "a"),
            ("x-multi", "b"),
            ("x-multi", "c"),
            ("empty", ""),
        ]),
    ]
}

#[test]
fn dictionary_matches_the_spec() {
    assert_eq!(SPDY3_DICTIONARY.len(), 1423);
    assert_eq!(adler32(SPDY3_DICTIONARY), 0xe3c6_a7c2);
    assert!(SPDY3_DICTIONARY.starts_with(b"\x00\x00\x00\x07options\x00\x00\x00\x04head"));
    assert!(SPDY3_DICTIONARY.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
}

#[test]
fn decodes_independent_vectors_statefully() {
    let mut dec = HeaderDecoder::new(DEFAULT_MAX_HEADER_BLOCK);
    for (vector, want) in PY_VECTORS.iter().zip(py_blocks()) {
        let raw = dec.decompress(vector).unwrap();
        assert_eq!(Headers::from_block(&raw).unwrap(), want);
    }
}

#[test]
fn encodes_like_reference_zlib() {
    let mut enc = HeaderEncoder::new().unwrap();
    let mut dec = HeaderDecoder::new(DEFAULT_MAX_HEADER_BLOCK);
    for (vector, block) in PY_VECTORS.iter().zip(py_blocks()) {
        let mut out = Vec::new();
        enc.compress(&block.to_block().unwrap(), &mut out).unwrap();
        assert_eq!(
            out.as_slice(),
            *vector,
            "compressed bytes differ from python zlib"
        );
        assert_eq!(
            Headers::from_block(&dec.decompress(&out).unwrap()).unwrap(),
            block
        );
    }
}

#[test]
fn many_blocks_share_one_context() {
    let mut codec = FrameCodec::new(Limits::default()).unwrap();
    let mut wire = BytesMut::new();
    let frames: Vec<Frame> = (1..200u32)
        .map(|i| Frame::SynStream {
            stream_id: i * 2 - 1,
            associated_to: 0,
            priority: (i % 8) as u8,
            slot: 0,
            fin: i % 3 == 0,
            unidirectional: false,
            headers: hdrs(&[
                ("streamtype", ["stdin", "stdout", "stderr"][i as usize % 3]),
                ("n", &i.to_string()),
            ]),
        })
        .collect();
    for f in &frames {
        codec.encode(f, &mut wire).unwrap();
    }
    // Later blocks reuse earlier ones: the stream must shrink well below a
    // per-block restart.
    assert!(wire.len() < frames.len() * 40, "{} bytes", wire.len());
    let mut peer = FrameCodec::new(Limits::default()).unwrap();
    for f in &frames {
        assert_eq!(peer.decode(&mut wire).unwrap().as_ref(), Some(f));
    }
    assert!(wire.is_empty());
}

fn all_frames() -> Vec<Frame> {
    vec![
        Frame::SynStream {
            stream_id: MAX_STREAM_ID,
            associated_to: MAX_STREAM_ID - 1,
            priority: 7,
            slot: 255,
            fin: true,
            unidirectional: true,
            headers: hdrs(&[("streamtype", "stdin"), ("port", "80")]),
        },
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: Headers::new(),
        },
        Frame::SynReply {
            stream_id: 3,
            fin: true,
            headers: hdrs(&[("a", "1"), ("a", "2")]),
        },
        Frame::SynReply {
            stream_id: MAX_STREAM_ID,
            fin: false,
            headers: Headers::new(),
        },
        Frame::RstStream {
            stream_id: MAX_STREAM_ID,
            status: RstStatus::FlowControlError,
        },
        Frame::RstStream {
            stream_id: 5,
            status: RstStatus::Unknown(0xffff_ffff),
        },
        Frame::Settings {
            clear: true,
            entries: vec![
                Setting {
                    flags: SETTINGS_FLAG_PERSIST_VALUE,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: u32::MAX,
                },
                Setting {
                    flags: SETTINGS_FLAG_PERSISTED,
                    id: 0x00ff_ffff,
                    value: 0,
                },
            ],
        },
        Frame::Settings {
            clear: false,
            entries: vec![],
        },
        Frame::Ping { id: u32::MAX },
        Frame::GoAway {
            last_good_stream_id: MAX_STREAM_ID,
            status: GoAwayStatus::InternalError,
        },
        Frame::GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::Unknown(77),
        },
        Frame::Headers {
            stream_id: 9,
            fin: true,
            headers: hdrs(&[("x", "")]),
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: MAX_STREAM_ID,
        },
        Frame::WindowUpdate {
            stream_id: MAX_STREAM_ID,
            delta: 1,
        },
        Frame::Data {
            stream_id: MAX_STREAM_ID,
            fin: true,
            data: Bytes::new(),
        },
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from(vec![0xab; MAX_FRAME_LEN]),
        },
    ]
}

#[test]
fn every_frame_round_trips() {
    let mut tx = FrameCodec::new(Limits::default()).unwrap();
    let mut rx = FrameCodec::new(Limits::default()).unwrap();
    let mut wire = BytesMut::new();
    for f in all_frames() {
        tx.encode(&f, &mut wire).unwrap();
    }
    for f in all_frames() {
        assert_eq!(rx.decode(&mut wire).unwrap(), Some(f));
    }
    assert_eq!(rx.decode(&mut wire).unwrap(), None);
}

#[test]
fn wire_layout_of_fixed_frames() {
    let mut tx = FrameCodec::new(Limits::default()).unwrap();
    let mut wire = BytesMut::new();
    tx.encode(&Frame::Ping { id: 1 }, &mut wire).unwrap();
    assert_eq!(
        &wire[..],
        &[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]
    );
    wire.clear();
    let data = Frame::Data {
        stream_id: 5,
        fin: true,
        data: Bytes::from_static(b"hi"),
    };
    tx.encode(&data, &mut wire).unwrap();
    assert_eq!(&wire[..], &[0, 0, 0, 5, 0x01, 0, 0, 2, b'h', b'i']);
    wire.clear();
    tx.encode(
        &Frame::RstStream {
            stream_id: 3,
            status: RstStatus::Cancel,
        },
        &mut wire,
    )
    .unwrap();
    assert_eq!(
        &wire[..],
        &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5]
    );
}

#[test]
fn encode_rejects_unrepresentable_frames() {
    let mut tx = FrameCodec::new(Limits::default()).unwrap();
    let mut wire = BytesMut::new();
    let bad = [
        Frame::Data {
            stream_id: 0,
            fin: false,
            data: Bytes::new(),
        },
        Frame::Data {
            stream_id: MAX_STREAM_ID + 1,
            fin: false,
            data: Bytes::new(),
        },
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from(vec![0; MAX_FRAME_LEN + 1]),
        },
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 0,
        },
        Frame::RstStream {
            stream_id: 1,
            status: RstStatus::Unknown(0),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: hdrs(&[("a\0b", "x")]),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: hdrs(&[("a", ""), ("a", "x")]),
        },
    ];
    for f in bad {
        assert!(tx.encode(&f, &mut wire).is_err(), "{f:?}");
        assert!(wire.is_empty());
    }
    // Refusals left the compressor usable.
    let ok = Frame::SynReply {
        stream_id: 1,
        fin: false,
        headers: hdrs(&[("a", "b")]),
    };
    tx.encode(&ok, &mut wire).unwrap();
    let mut rx = FrameCodec::new(Limits::default()).unwrap();
    assert_eq!(rx.decode(&mut wire).unwrap(), Some(ok));
}

#[test]
fn truncated_input_waits_for_more() {
    let mut tx = FrameCodec::new(Limits::default()).unwrap();
    let mut full = BytesMut::new();
    for f in all_frames().into_iter().take(12) {
        tx.encode(&f, &mut full).unwrap();
    }
    // Feed one byte at a time: every prefix must yield None or a whole frame.
    let mut rx = FrameCodec::new(Limits::default()).unwrap();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in full.iter() {
        buf.extend_from_slice(&[*b]);
        while let Some(f) = rx.decode(&mut buf).unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got, all_frames().into_iter().take(12).collect::<Vec<_>>());
}

fn control(frame_type: u16, flags: u8, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u16(0x8003);
    b.put_u16(frame_type);
    b.put_u32((u32::from(flags) << 24) | body.len() as u32);
    b.put_slice(body);
    b
}

#[test]
fn malformed_frames_are_errors() {
    let cases: Vec<(&str, BytesMut, bool)> = vec![
        (
            "wrong version",
            {
                let mut b = control(TYPE_PING, 0, &[0, 0, 0, 1]);
                b[1] = 2;
                b
            },
            true,
        ),
        ("ping length", control(TYPE_PING, 0, &[0, 0, 1]), true),
        (
            "rst length",
            control(TYPE_RST_STREAM, 0, &[0, 0, 0, 1]),
            true,
        ),
        (
            "rst status 0",
            control(TYPE_RST_STREAM, 0, &[0, 0, 0, 1, 0, 0, 0, 0]),
            true,
        ),
        (
            "rst stream 0",
            control(TYPE_RST_STREAM, 0, &[0, 0, 0, 0, 0, 0, 0, 1]),
            true,
        ),
        (
            "goaway length",
            control(TYPE_GOAWAY, 0, &[0, 0, 0, 0]),
            true,
        ),
        (
            "window length",
            control(TYPE_WINDOW_UPDATE, 0, &[0, 0, 0, 1]),
            true,
        ),
        (
            "session window delta 0",
            control(TYPE_WINDOW_UPDATE, 0, &[0, 0, 0, 0, 0, 0, 0, 0]),
            true,
        ),
        (
            "stream window delta 0",
            control(TYPE_WINDOW_UPDATE, 0, &[0, 0, 0, 3, 0, 0, 0, 0]),
            false,
        ),
        (
            "settings count too big",
            control(
                TYPE_SETTINGS,
                0,
                &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 7, 0, 0, 0, 1],
            ),
            true,
        ),
        (
            "settings count too small",
            control(TYPE_SETTINGS, 0, &[0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1]),
            true,
        ),
        ("settings short", control(TYPE_SETTINGS, 0, &[0, 0]), true),
        (
            "syn_stream short",
            control(TYPE_SYN_STREAM, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0]),
            true,
        ),
        (
            "syn_reply short",
            control(TYPE_SYN_REPLY, 0, &[0, 0, 1]),
            true,
        ),
        (
            "headers garbage zlib",
            control(TYPE_HEADERS, 0, &[0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]),
            true,
        ),
        (
            "data stream 0",
            {
                let mut b = BytesMut::new();
                b.put_u32(0);
                b.put_u32(1);
                b.put_u8(9);
                b
            },
            true,
        ),
    ];
    for (name, mut wire, session) in cases {
        let mut rx = FrameCodec::new(Limits::default()).unwrap();
        let err = rx.decode(&mut wire).expect_err(name);
        assert_eq!(err.is_session_error(), session, "{name}: {err}");
    }
}

#[test]
fn unknown_control_frames_are_skipped() {
    let mut wire = control(0x0005, 0xff, b"noop!");
    wire.extend_from_slice(&control(TYPE_PING, 0, &[0, 0, 0, 7]));
    let mut rx = FrameCodec::new(Limits::default()).unwrap();
    assert_eq!(
        rx.decode(&mut wire).unwrap(),
        Some(Frame::Unknown {
            frame_type: 5,
            flags: 0xff,
            len: 5
        })
    );
    assert_eq!(rx.decode(&mut wire).unwrap(), Some(Frame::Ping { id: 7 }));
}

#[test]
fn oversized_frames_fail_before_buffering() {
    let limits = Limits {
        max_frame_len: 1024,
        ..Limits::default()
    };
    let mut rx = FrameCodec::new(limits).unwrap();
    // Only the 8-byte header is present: the length alone condemns it.
    let mut wire = BytesMut::from(&[0u8, 0, 0, 1, 0, 0x00, 0x04, 0x01][..]);
    match rx.decode(&mut wire) {
        Err(Error::FrameTooLarge {
            len: 1025,
            max: 1024,
        }) => {}
        other => panic!("{other:?}"),
    }
    let mut ok = BytesMut::from(&[0u8, 0, 0, 1, 0, 0x00, 0x04, 0x00][..]);
    assert_eq!(rx.decode(&mut ok).unwrap(), None);
}

fn compressed_block(raw: &[u8]) -> Vec<u8> {
    let mut enc = HeaderEncoder::new().unwrap();
    let mut out = Vec::new();
    enc.compress(raw, &mut out).unwrap();
    out
}

fn syn_stream_with_block(stream_id: u32, block: &[u8]) -> BytesMut {
    let mut body = Vec::new();
    body.extend_from_slice(&stream_id.to_be_bytes());
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(block);
    control(TYPE_SYN_STREAM, 0, &body)
}

#[test]
fn bad_header_blocks_are_stream_errors() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "count beyond block",
            vec![0, 0, 0, 9, 0, 0, 0, 1, b'a', 0, 0, 0, 0],
        ),
        ("huge count", vec![0xff, 0xff, 0xff, 0xff]),
        ("truncated name", vec![0, 0, 0, 1, 0, 0, 0, 9, b'a']),
        (
            "name length overflow",
            vec![0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, b'a', 0, 0, 0, 0],
        ),
        ("empty name", vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        (
            "uppercase name",
            vec![0, 0, 0, 1, 0, 0, 0, 1, b'A', 0, 0, 0, 0],
        ),
        (
            "duplicate",
            vec![
                0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 0, 0,
            ],
        ),
        (
            "leading NUL",
            vec![0, 0, 0, 1, 0, 0, 0, 1, b'a', 0, 0, 0, 2, 0, b'x'],
        ),
        (
            "double NUL",
            vec![0, 0, 0, 1, 0, 0, 0, 1, b'a', 0, 0, 0, 3, b'x', 0, 0],
        ),
        ("trailing bytes", vec![0, 0, 0, 0, 7]),
        ("not utf-8", vec![0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0, 0, 0, 0]),
    ];
    for (name, raw) in cases {
        let mut rx = FrameCodec::new(Limits::default()).unwrap();
        let mut wire = syn_stream_with_block(7, &compressed_block(&raw));
        match rx.decode(&mut wire) {
            Err(Error::Stream {
                stream_id: 7,
                status: RstStatus::ProtocolError,
                ..
            }) => {}
            other => panic!("{name}: {other:?}"),
        }
        assert!(wire.is_empty(), "{name}: frame must be consumed");
    }
}

#[test]
fn decompression_bomb_is_capped() {
    let limits = Limits {
        max_header_block: 64 * 1024,
        ..Limits::default()
    };
    // 4 MiB of zeros compresses to a few KiB.
    let mut raw = vec![0, 0, 0, 1, 0, 0, 0, 1, b'a'];
    raw.extend_from_slice(&(4u32 << 20).to_be_bytes());
    raw.resize(raw.len() + (4 << 20), b'z');
    let block = compressed_block(&raw);
    assert!(block.len() < 16 * 1024);
    let mut rx = FrameCodec::new(limits).unwrap();
    let mut wire = syn_stream_with_block(1, &block);
    match rx.decode(&mut wire) {
        Err(Error::HeaderBlockTooLarge { limit: 65536 }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn random_bytes_never_panic() {
    // xorshift64*: deterministic, no extra dependency.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut valid = BytesMut::new();
    let mut tx = FrameCodec::new(Limits::default()).unwrap();
    for f in all_frames().into_iter().take(14) {
        tx.encode(&f, &mut valid).unwrap();
    }
    let limits = Limits {
        max_frame_len: 64 * 1024,
        max_header_block: 16 * 1024,
    };
    for round in 0..3000 {
        let mut input = if round % 2 == 0 {
            // Mutated valid stream: reaches deep into every parser.
            let mut v = valid.clone();
            for _ in 0..(next() % 8 + 1) {
                let i = (next() as usize) % v.len();
                v[i] = next() as u8;
            }
            v
        } else {
            let len = (next() % 512) as usize;
            let mut v = BytesMut::with_capacity(len);
            for _ in 0..len {
                v.put_u8(next() as u8);
            }
            if round % 3 == 0 && v.len() > 4 {
                v[0] = 0x80;
                v[1] = 0x03;
            }
            v
        };
        let mut rx = FrameCodec::new(limits).unwrap();
        for _ in 0..64 {
            match rx.decode(&mut input) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) if e.is_session_error() => break,
                Err(_) => {}
            }
        }
    }
}
